"""Figures a referee accepts (issue 24), from a real workflow at small settings: MoS2 and WSe2
monolayers (preset ``test``, 12-point path, 6x6 map) through every figure step, then
``tmdflow report``.  MoS2 and WSe2 have opposite Delta_CB signs, so Fig. 4's CSV is checked
against Table I for both.  About 5 minutes on 2 cores.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.helpers import ROOT

pytestmark = pytest.mark.qe

WORKFLOW = """name: referee
calculator: espresso
preset: test
overrides: {path_points: 12}
materials: [MoS2, WSe2]
structures: [monolayer]
steps: [scf_sr, scf_soc, bands_soc, analysis, bands_sr, soc_map, figures]
"""


def _tmdflow(env, *args):
    proc = subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from tmdflow.settings import load_settings

    root = tmp_path_factory.mktemp("referee")
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{root / 'store.json'}", "TMDFLOW_WORK_DIR": str(root / "runs"),
           "TMDFLOW_NPROCS": str(min(2, os.cpu_count() or 1)), "TMDFLOW_CONFIG": os.devnull,
           "TMDFLOW_PSEUDO_DIR": str(load_settings().pseudo_dir), "PYTHONPATH": str(ROOT)}
    (root / "wf.yaml").write_text(WORKFLOW)
    _tmdflow(env, "submit", str(root / "wf.yaml"))
    _tmdflow(env, "launch")
    table = {r["formula"]: r for r in json.loads(_tmdflow(env, "table1", "--format", "json").stdout)}
    from tmdflow.store.connection import connect
    from tmdflow.store.results import ResultsStore

    store = ResultsStore(connect(load_settings(env={k: v for k, v in env.items() if k.startswith("TMDFLOW_")}),
                                 readonly=True).db)
    figures = {m.formula: store.figures(m.material_id) for m in store.materials()}
    return {"root": root, "env": env, "table": table, "figures": figures}


def _csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("formula, sign", [("MoS2", +1), ("WSe2", -1)])
def test_fig4_csv_gives_delta_cb_k_with_the_table_sign(study, formula, sign):
    """Before: Fig. 4's CSV gave Delta_LCB(K) = -2.87 meV where the table gave +2.87."""
    fig = study["figures"][formula]
    rows = _csv(Path(fig.directory) / "fig4_gamma_k.csv")
    at_k = rows[-1]
    assert float(at_k["fraction_of_gamma_k"]) == pytest.approx(1.0)
    table = study["table"][formula]
    assert np.sign(table["delta_cb_k_mev"]) == sign  # MoX2 > 0, WX2 < 0 (docs/physics.md)
    assert float(at_k["delta_cb_mev"]) == pytest.approx(table["delta_cb_k_mev"], abs=0.05)  # table: 1 decimal
    assert float(at_k["delta_vb_mev"]) == pytest.approx(table["delta_vb_k_mev"], abs=0.05)
    # the spin-resolved quantity keeps its own name: E(up) - E(down), opposite to Delta_CB for up at K
    up_down = float(at_k["lcb_e_up_minus_e_down_mev"])
    assert abs(up_down) == pytest.approx(abs(table["delta_cb_k_mev"]), abs=0.05)
    assert not any(k.startswith("delta_lcb") for k in at_k)
    assert fig.gamma_k_profile["delta_cb_mev"][-1] == pytest.approx(table["delta_cb_k_mev"], abs=0.05)


def test_fig3_csv_names_the_spin_resolved_quantity(study):
    rows = _csv(Path(study["figures"]["WSe2"].directory) / "fig3_map.csv")
    assert {"uvb_e_up_minus_e_down_mev", "lcb_e_up_minus_e_down_mev", "uvb_sigma_z"} <= set(rows[0])
    lcb = np.array([float(r["lcb_e_up_minus_e_down_mev"]) for r in rows])
    assert lcb.max() == pytest.approx(-lcb.min(), rel=1e-3)  # K and K': opposite signs, same size


def test_every_figure_states_material_settings_and_mesh(study):
    for formula, fig in study["figures"].items():
        for stem in ("fig2_bands", "fig3_splitting_map", "fig3_contours", "fig4_gamma_k"):
            svg = (Path(fig.directory) / f"{stem}.svg").read_text()
            text = " ".join(re.findall(r"<!-- (.*?) -->", svg))  # matplotlib writes each text as a comment
            assert f"{formula} monolayer" in text, (formula, stem)
            assert "settings test (path_points=12)" in text and "SCF 3×3×1" in text, (formula, stem)
            if stem.startswith("fig3"):
                assert "map 6×6 grid" in text
        fig2 = (Path(fig.directory) / "fig2_bands.svg").read_text()
        assert "with SOC (colour: ⟨σz⟩)" in fig2 and "without SOC" in fig2  # the legend


def test_report_has_the_multi_panel_fig2(study, tmp_path):
    out = tmp_path / "report.html"
    _tmdflow(study["env"], "report", "-o", str(out))
    page = out.read_text()
    assert "Fig. 2: the monolayers side by side (test (path_points=12))" in page
    md = tmp_path / "report.md"
    _tmdflow(study["env"], "report", "--format", "markdown", "-o", str(md))
    images = sorted((tmp_path / "report_images").glob("fig2_monolayers_*.png"))
    assert len(images) == 1 and images[0].stat().st_size > 30_000
    data = list(csv.reader(open(images[0].with_suffix(".csv"))))
    assert data[0][:3] == ["material", "k_path_inv_angstrom", "run"]
    materials = {row[0] for row in data[1:]}
    assert materials == {"MoS2 monolayer", "WSe2 monolayer"}
    # one energy window, VBM at 0 for each material: the top valence band peaks at 0
    for material in materials:
        soc = np.array([[float(v) for v in row[3:]] for row in data[1:] if row[0] == material and row[2] == "soc"])
        assert np.max(soc[soc <= 1e-6]) == pytest.approx(0.0, abs=1e-4)
    assert base64.b64decode(re.search(r"data:image/png;base64,([^']+)'", page).group(1))[:4] == b"\x89PNG"


def test_report_redraws_the_figures_from_the_store_when_the_run_directory_is_gone(study, tmp_path):
    """Scratch purged, a backup restored elsewhere: the figures step's files are gone, the store
    still holds the bands, the map (with its check points) and the Gamma-K profile -- the report
    draws every figure again from those and says so."""
    runs = study["root"] / "runs"
    hidden = study["root"] / "runs-moved-away"
    before = tmp_path / "before.html"
    _tmdflow(study["env"], "report", "-o", str(before))
    runs.rename(hidden)
    try:
        out = tmp_path / "after.html"
        _tmdflow(study["env"], "report", "-o", str(out))
        md = tmp_path / "after.md"
        _tmdflow(study["env"], "report", "--format", "markdown", "-o", str(md))
    finally:
        hidden.rename(runs)
    page = out.read_text()
    # the multi-panel Fig. 2 + Fig. 2, 3 (map, contours), 4 of each monolayer, as with the files there
    assert page.count("data:image/png;base64,") == before.read_text().count("data:image/png;base64,") == 9
    assert page.count("Redrawn from the results store") == 8
    for formula, fig in study["figures"].items():
        again = tmp_path / "after_figures" / fig.material_id
        assert sorted(p.name for p in again.glob("*.png")) == [
            "fig2_bands.png", "fig3_contours.png", "fig3_splitting_map.png", "fig4_gamma_k.png"]
        # the same data as the figures step wrote (the store keeps eigenvalues as float32: ~1 micro-eV)
        for name in ("fig3_map.csv", "fig4_gamma_k.csv", "fig2_bands.csv"):
            redrawn, written = (list(csv.reader(open(d / name))) for d in (again, Path(fig.directory)))
            header = written[0]
            assert redrawn[0] == header and len(redrawn) == len(written), name
            for got, want in zip(redrawn[1:], written[1:]):
                assert len(got) == len(want), name
                for column, x, y in zip(header + [""] * len(want), got, want):
                    if column == "run":
                        assert x == y
                    else:  # meV columns to 0.01; eV (float32 to 4 micro-eV at 34 eV, plus the CSV's rounding
                        # of each side), 1/Angstrom, fractions and weights to 2e-5
                        assert abs(float(x) - float(y)) <= (1e-2 if column.endswith("_mev") else 2e-5), (name, column)
        svg = (again / "fig3_contours.svg").read_text()
        assert "3 direct check points" in svg  # the interpolation validated again, as in the step
    assert "Redrawn from the results store" in md.read_text()
    assert len(list((tmp_path / "after_images").glob("*-fig3_splitting_map.png"))) == 2
