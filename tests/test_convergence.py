"""The convergence procedure: its logic on a model with a known truncation error, and one real
two-point run (pw.x) to check the wiring into the pipeline."""

import os

import pytest

from tmdflow.analysis.splitting import SplittingResult
from tmdflow.convergence import converge
from tmdflow.errors import InputError
from tmdflow.presets import load_preset


def _result(dvb, dcb=3.0, dge=60.0):
    return SplittingResult(dvb, dcb, True, dge, 1.6, True, "K", "K", None, None, None, None, 5)


def _model(s):
    # Delta_VB converges as 150 - 400/ecut^... : errors 10.0, 2.5, 0.6 meV at 40, 80, 160 Ry;
    # the k-mesh matters only below 9; the vacuum not at all
    dvb = 150 - 4e2 / s["ecutwfc"] - (5.0 if s["kmesh"] < 9 else 0.0)
    return _result(dvb), 1.0


def test_each_parameter_stops_at_the_first_value_within_tolerance():
    r = converge("MoS2", load_preset("quick"), {"ecutwfc": [40, 80, 160, 320], "kmesh": [6, 9, 12],
                                                 "vacuum": [15, 20]}, _model, tolerance_mev=2.0)
    # ecut: 40->80 changes 5.0, 80->160 changes 2.5, 160->320 changes 1.25 < 2 -> 160
    assert r.converged_settings["ecutwfc"] == 160 and r.converged_settings["ecutrho"] == 160 * 8
    assert r.converged_settings["kmesh"] == 9 and r.converged_settings["vacuum"] == 15
    assert all(r.converged.values())
    assert r.error_bars_mev["delta_vb_k_mev"] == pytest.approx(1.25)  # rss of 1.25 (ecut), 0 (k), 0 (vac)
    assert r.values_mev["delta_vb_k_mev"] == pytest.approx(150 - 400 / 160)
    assert len(r.points) == len({tuple(sorted(p.settings.items())) for p in r.points})  # no run twice


def test_an_exhausted_ladder_is_reported_not_hidden():
    r = converge("MoS2", load_preset("quick"), {"ecutwfc": [40, 80]}, _model, tolerance_mev=2.0)
    assert r.converged == {"ecutwfc": False} and r.converged_settings["ecutwfc"] == 80
    assert r.error_bars_mev["delta_vb_k_mev"] == pytest.approx(5.0)


def test_bad_ladders_are_refused_before_any_run():
    calls = []
    with pytest.raises(InputError, match="ascending"):
        converge("MoS2", load_preset("quick"), {"kmesh": [9, 6]}, lambda s: calls.append(s), 2.0)
    with pytest.raises(InputError, match="cannot converge"):
        converge("MoS2", load_preset("quick"), {"degauss": [1, 2]}, lambda s: calls.append(s), 2.0)
    assert not calls


@pytest.mark.qe
def test_convergence_workflow_stores_error_bars_that_table1_shows(tmp_path, pseudo_dir):
    """kind: convergence through submit + launch (real pw.x, two points), then table1's ± column."""
    import csv
    import io
    import os
    import subprocess
    import sys
    from pathlib import Path

    import bson.json_util

    (tmp_path / "conv.yaml").write_text(
        "name: conv\nkind: convergence\npreset: test\nmaterials: [MoS2]\nstructures: [monolayer]\n"
        "convergence: {tolerance_mev: 2.0, ladders: {vacuum: [10.0, 12.0]}}\n")
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}", "TMDFLOW_WORK_DIR": str(tmp_path),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": str(min(2, os.cpu_count() or 1)),
           "PYTHONPATH": str(Path(__file__).parent.parent)}

    def tmdflow(*args):
        proc = subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    tmdflow("submit", str(tmp_path / "conv.yaml"))
    tmdflow("launch")
    doc = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]["convergence"]["documents"][0][1]
    assert doc["converged"] == {"vacuum": True} and doc["converged_settings"]["vacuum"] == 10.0
    assert len(doc["points"]) == 2
    # Delta_VB(K) of an isolated layer does not depend on 2 A more vacuum (measured < 0.1 meV)
    assert doc["error_bars_mev"]["delta_vb_k_mev"] < 0.5
    assert doc["values_mev"]["delta_vb_k_mev"] == pytest.approx(147.7, abs=1.0)  # test preset (presets/test.yaml)
    # a material result of the same formula now shows the error bar in Table I
    from tmdflow.analysis.table1 import render, table1_rows
    from tmdflow.store.documents import ConvergenceDoc
    from tmdflow.store.results import ResultsStore

    rows = table1_rows([_material_doc()], error_bars={"MoS2-monolayer-test": doc["error_bars_mev"]})
    table = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert float(table[0]["delta_vb_k_error_bar_mev"]) == pytest.approx(  # CSV: rounded as shown (issue 24)
        doc["error_bars_mev"]["delta_vb_k_mev"], abs=0.05)
    assert ConvergenceDoc.model_validate({k: v for k, v in doc.items() if k != "_id"})


def _material_doc(preset="test", formula="MoS2"):
    from tmdflow.store.documents import MaterialDocument, Table1Entry

    return MaterialDocument(material_id=f"{formula}-monolayer-{preset}", formula=formula, dimensionality="monolayer",
                            preset=preset, calculator="espresso", spin_orbit_mode="scf",
                            table1=Table1Entry(a_angstrom=3.19, d_angstrom=1.57, relaxed=False),
                            splitting=_result(147.7))


def test_table1_shows_error_bars_from_the_store(tmp_path):
    from click.testing import CliRunner

    from tmdflow.cli import main
    from tmdflow.settings import load_settings
    from tmdflow.store.connection import connect
    from tmdflow.store.documents import ConvergenceDoc
    from tmdflow.store.results import ResultsStore

    uri = f"embedded:{tmp_path / 'store.json'}"
    conn = connect(load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=uri))
    store = ResultsStore(conn.db)
    store.upsert_material(_material_doc())
    store.put_convergence(ConvergenceDoc(convergence_id="MoS2-monolayer-quick", formula="MoS2", base_preset="quick",
                                         tolerance_mev=2.0, converged_settings={"ecutwfc": 45.0},
                                         converged={"ecutwfc": True},
                                         error_bars_mev={"delta_vb_k_mev": 0.3, "delta_cb_k_mev": 0.2,
                                                         "delta_e_gamma_k_mev": 1.7},
                                         values_mev={"delta_vb_k_mev": 149.1}, points=[]))
    conn.checkpoint()
    out = CliRunner().invoke(main, ["table1", "--format", "csv"],
                             env={"TMDFLOW_DB_URI": uri, "TMDFLOW_CONFIG": os.devnull})
    assert out.exit_code == 0, out.output
    header, row = out.output.splitlines()[:2]
    cells = dict(zip(header.split(","), row.split(",")))
    assert (cells["delta_vb_k_error_bar_mev"], cells["delta_cb_k_error_bar_mev"],
            cells["delta_e_gamma_k_error_bar_mev"]) == ("0.3", "0.2", "1.7")


def test_error_bars_apply_only_at_settings_at_least_as_converged_and_the_same_pseudopotentials():
    from tmdflow.convergence import applicable_error_bars, error_bars_apply

    study = {"ecutwfc": 45.0, "ecutrho": 360.0, "kmesh": 9, "vacuum": 15.0, "pseudo_family": "pslibrary-paw",
             "spin_orbit_mode": "scf"}
    paper = {"ecutwfc": 60.0, "ecutrho": 480.0, "kmesh": 16, "vacuum": 30.0, "pseudo_family": "pslibrary-paw",
             "spin_orbit_mode": "scf"}
    assert error_bars_apply(study, paper)  # above the converged settings: the bar is an upper bound
    assert error_bars_apply(study, {**paper, "ecutwfc": 45.0})  # equal counts
    assert not error_bars_apply(study, {**paper, "kmesh": 6})  # below the converged mesh: unknown error
    assert not error_bars_apply(study, {**paper, "vacuum": 10.0})
    assert not error_bars_apply(study, {**paper, "pseudo_family": "pslibrary-nc"})
    assert not error_bars_apply(study, {**paper, "spin_orbit_mode": "second_variational"})
    bars = applicable_error_bars([(study, {"delta_vb_k_mev": 0.1, "delta_e_gamma_k_mev": 1.8}),
                                  ({**study, "kmesh": 20}, {"delta_vb_k_mev": 9.0}),  # does not apply to 16
                                  ({**study, "ecutwfc": 60.0}, {"delta_vb_k_mev": 0.4, "delta_e_gamma_k_mev": 0.5})],
                                 paper)
    assert bars == {"delta_vb_k_mev": 0.4, "delta_e_gamma_k_mev": 1.8}  # the largest of those that apply
    assert applicable_error_bars([({**study, "kmesh": 20}, {"delta_vb_k_mev": 9.0})], paper) is None


def test_error_bars_follow_the_pseudopotential_of_each_element_of_the_material():
    """A replacement family for Se changes the pseudopotentials of WSe2, not of MoS2."""
    from tmdflow.convergence import error_bars_apply

    base = {"ecutwfc": 45.0, "kmesh": 16, "vacuum": 30.0, "pseudo_family": "pslibrary-paw", "spin_orbit_mode": "scf"}
    se3d = {**base, "element_pseudo_families": {"Se": "pslibrary-1.0.0-paw"}}
    assert error_bars_apply(base, se3d, ["Mo", "S"])  # S and Mo: same files either way
    assert not error_bars_apply(base, se3d, ["W", "Se"])  # Se is another pseudopotential
    assert error_bars_apply(se3d, {**se3d, "element_pseudo_families": {"Se": "pslibrary-1.0.0-paw"}}, ["W", "Se"])
    assert error_bars_apply(base, {**base, "element_pseudo_families": {}}, ["W", "Se"])  # older documents: none
    assert not error_bars_apply(base, se3d)  # elements unknown: the names as written must agree


def test_studies_with_other_pseudopotentials_are_stored_under_their_own_key():
    from tmdflow.convergence import convergence_id
    from tmdflow.presets import load_preset

    se3d = load_preset("quick", {"element_pseudo_families": {"Se": "pslibrary-1.0.0-paw"}})
    assert convergence_id("WSe2", load_preset("quick")) == "WSe2-monolayer-quick"
    assert convergence_id("WSe2", se3d) == "WSe2-monolayer-quick+Se:pslibrary-1.0.0-paw"
    assert convergence_id("WS2", se3d) == "WS2-monolayer-quick"  # no Se: the same files as quick
    assert convergence_id("MoSe2", load_preset("paper")) == "MoSe2-monolayer-paper"  # the preset's own choice
    nc = load_preset("quick", {"pseudo_family": "pslibrary-nc"})
    assert convergence_id("MoS2", nc) == "MoS2-monolayer-quick+Mo:pslibrary-nc+S:pslibrary-nc"


def test_store_shows_a_study_s_error_bars_only_for_results_it_covers(tmp_path):
    """A quick-based study converged at 9x9x1: a quick result (6x6x1) gets no bar, a paper result
    (16x16x1) and a quick result whose workflow overrode the mesh to 12 do; a study of MoS2 says
    nothing about WS2."""
    from tmdflow.settings import load_settings
    from tmdflow.store.connection import connect
    from tmdflow.store.documents import ConvergenceDoc, TaskDocument
    from tmdflow.store.results import ResultsStore
    import dataclasses

    conn = connect(load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=f"embedded:{tmp_path / 's.json'}"))
    store = ResultsStore(conn.db)
    store.put_convergence(ConvergenceDoc(convergence_id="MoS2-monolayer-quick", formula="MoS2", base_preset="quick",
                                         tolerance_mev=2.0,
                                         converged_settings={"ecutwfc": 45.0, "ecutrho": 360.0, "kmesh": 9,
                                                             "vacuum": 15.0},
                                         converged={"ecutwfc": True, "kmesh": True, "vacuum": True},
                                         error_bars_mev={"delta_vb_k_mev": 0.1, "delta_cb_k_mev": 0.0,
                                                         "delta_e_gamma_k_mev": 1.8},
                                         values_mev={}, points=[]))  # an older document: no pseudo_family
    quick, paper, ws2 = _material_doc("quick"), _material_doc("paper"), _material_doc("paper", "WS2")
    overridden = _material_doc("quick").model_copy(update={"material_id": "MoS2-monolayer-quick12"})
    store.upsert_task(TaskDocument(task_id="MoS2-monolayer-quick12-bands_soc", formula="MoS2",
                                   dimensionality="monolayer", preset="quick", step="bands_soc", calculator="espresso",
                                   inputs={"preset": {**dataclasses.asdict(load_preset("quick")), "kmesh": 12}}))
    bars = store.error_bars([quick, paper, ws2, overridden])
    assert set(bars) == {"MoS2-monolayer-paper", "MoS2-monolayer-quick12"}
    assert bars["MoS2-monolayer-paper"]["delta_e_gamma_k_mev"] == 1.8
    nc = _material_doc("second_variational")  # norm-conserving files: the PAW study does not apply
    assert store.error_bars([nc]) == {}
