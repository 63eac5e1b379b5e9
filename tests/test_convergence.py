"""The convergence procedure: its logic on a model with a known truncation error, and one real
two-point run (pw.x) to check the wiring into the pipeline."""

import os

import pytest

from tmdflow.analysis.splitting import SplittingResult
from tmdflow.convergence import converge
from tmdflow.errors import InputError
from tmdflow.presets import load_preset
from tests.helpers import ROOT


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

    import bson.json_util

    (tmp_path / "conv.yaml").write_text(
        "name: conv\nkind: convergence\npreset: test\nmaterials: [MoS2]\nstructures: [monolayer]\n"
        "convergence: {tolerance_mev: 2.0, ladders: {vacuum: [10.0, 12.0]}}\n")
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}", "TMDFLOW_WORK_DIR": str(tmp_path),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": str(min(2, os.cpu_count() or 1)),
           "PYTHONPATH": str(ROOT)}

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


# -- Elk: the same procedure over rgkmax, nempty, lmaxapw, k-mesh, vacuum -----------------------------

# WSe2 with Elk 8.4.30 at the paper's geometry, R_mt 2.1 bohr, lmaxapw 10 (issue 25's hand runs, docs/physics.md
# "Elk's own convergence"): (rgkmax, k-mesh, vacuum) -> Delta_VB(K), Delta_CB(K) (signed), dE(Gamma-K), meV
ELK_WSE2_MEASURED = {
    (7.0, 6, 15.0): (449.6, -34.8, 524.1),
    (8.0, 6, 15.0): (452.5, -35.7, 520.5),
    (7.0, 12, 15.0): (449.6, -34.8, 522.2),
    (7.0, 6, 20.0): (449.7, -35.5, 513.6),
}


def elk_wse2_measured_point(s):
    """A convergence point from the measured table; a point that was not measured is a KeyError."""
    assert s["elk_rmt"] == 2.1 and s["elk_lmaxapw"] == 10 and s["elk_nempty"] == 4  # held at the hand runs' values
    dvb, dcb, dge = ELK_WSE2_MEASURED[s["elk_rgkmax"], s["kmesh"], s["vacuum"]]
    return _result(dvb, dcb, dge), 1.0


def test_elk_scan_points_hold_the_method_and_type_the_integer_keys():
    from tmdflow.convergence import parameters_for, point_settings, point_tag

    quick = load_preset("elk-quick")
    assert parameters_for("elk") == ("elk_rgkmax", "elk_nempty", "elk_lmaxapw", "kmesh", "vacuum")
    s = point_settings(quick, {"elk_nempty": 8.0, "kmesh": 9.0}, "elk")  # ladders come as floats from YAML
    assert s == {"elk_rgkmax": 7.0, "elk_nempty": 8, "elk_lmaxapw": 8, "kmesh": 9, "vacuum": 15.0,
                 "elk_rmt": 2.1, "elk_gmaxvr": 12.0}
    assert isinstance(s["elk_nempty"], int) and isinstance(s["kmesh"], int)
    assert point_tag(s, "elk") == "r7-n8-l8-k9-v15"
    assert point_settings(load_preset("quick"), {}, "espresso") == {"ecutwfc": 45.0, "ecutrho": 360.0, "kmesh": 6,
                                                                    "vacuum": 15.0}
    with pytest.raises(InputError, match="no convergence study for calculator 'wien2k'"):
        parameters_for("wien2k")


def test_elk_convergence_on_measured_wse2_numbers():
    preset = load_preset("elk-quick", {"elk_lmaxapw": 10})
    r = converge("WSe2", preset, {"elk_rgkmax": [7, 8], "kmesh": [6, 12], "vacuum": [15, 20]}, elk_wse2_measured_point,
                 tolerance_mev=4.0, calculator="elk")
    # rgkmax 7->8: 2.9 / 0.9 / 3.6 meV < 4 -> 7; k 6->12: 0.0 / 0.0 / 1.9 -> 6; vacuum 15->20: dE 10.5 -> exhausted
    assert r.converged == {"elk_rgkmax": True, "kmesh": True, "vacuum": False}
    assert (r.converged_settings["elk_rgkmax"], r.converged_settings["kmesh"], r.converged_settings["vacuum"]) == \
        (7.0, 6, 20.0)
    assert r.error_bars_mev["delta_vb_k_mev"] == pytest.approx((2.9**2 + 0.0**2 + 0.1**2) ** 0.5, abs=1e-9)
    assert r.error_bars_mev["delta_cb_k_mev"] == pytest.approx((0.9**2 + 0.7**2) ** 0.5, abs=1e-9)
    assert r.error_bars_mev["delta_e_gamma_k_mev"] == pytest.approx((3.6**2 + 1.9**2 + 10.5**2) ** 0.5, abs=1e-9)
    assert r.values_mev["delta_vb_k_mev"] == 449.7  # at the converged settings (20 A)
    assert len(r.points) == 4  # (7, 6, 15) once, shared by the three ladders
    with pytest.raises(InputError, match="cannot converge \\['ecutwfc'\\] with elk"):
        converge("WSe2", preset, {"ecutwfc": [45, 60]}, elk_wse2_measured_point, calculator="elk")
    with pytest.raises(InputError, match="cannot converge \\['elk_rgkmax'\\] with espresso"):
        converge("WSe2", load_preset("quick"), {"elk_rgkmax": [7, 8]}, elk_wse2_measured_point)


def test_elk_studies_cover_only_elk_results_with_the_same_radius():
    from tmdflow.convergence import applicable_error_bars, convergence_id, error_bars_apply, study_calculator

    elk_study = {"elk_rgkmax": 7.0, "elk_nempty": 4.0, "elk_lmaxapw": 8.0, "kmesh": 6.0, "vacuum": 20.0,
                 "elk_rmt": 2.1, "elk_gmaxvr": 12.0, "pseudo_family": "pslibrary-paw", "spin_orbit_mode": "scf"}
    qe_study = {"ecutwfc": 45.0, "ecutrho": 360.0, "kmesh": 6.0, "vacuum": 15.0, "pseudo_family": "pslibrary-paw",
                "spin_orbit_mode": "scf"}
    assert (study_calculator(elk_study), study_calculator(qe_study)) == ("elk", "espresso")
    import dataclasses

    paper = dataclasses.asdict(load_preset("elk-paper"))  # 16x16x1, 30 A, lmaxapw 10: above the study
    quick = dataclasses.asdict(load_preset("elk-quick"))  # 15 A: below the study's 20 A
    assert error_bars_apply(elk_study, paper, ["W", "Se"], "elk")
    assert not error_bars_apply(elk_study, quick, ["W", "Se"], "elk")
    assert not error_bars_apply(elk_study, {**paper, "elk_rmt": 2.3}, ["W", "Se"], "elk")  # another method
    assert not error_bars_apply(elk_study, paper, ["W", "Se"])  # a QE result (the presets carry elk_* keys too)
    assert not error_bars_apply(qe_study, paper, ["W", "Se"], "elk")
    assert applicable_error_bars([(elk_study, {"delta_vb_k_mev": 2.9})], paper, ["W", "Se"]) is None  # QE: none
    assert convergence_id("WSe2", load_preset("elk-quick"), "elk") == "WSe2-monolayer-elk-quick-elk"


def test_elk_convergence_workflow_file():
    from tmdflow.workflow_spec import load_workflow

    spec = load_workflow(ROOT / "workflows" / "elk-convergence.yaml")
    assert spec.kind == "convergence" and spec.calculator == "elk"
    assert list(spec.convergence.ladders) == ["elk_rgkmax", "elk_nempty", "elk_lmaxapw", "kmesh", "vacuum"]


def test_a_convergence_workflow_refuses_the_other_code_s_parameters(tmp_path):
    from tmdflow.workflow_spec import load_workflow

    path = tmp_path / "conv.yaml"
    path.write_text("name: c\nkind: convergence\ncalculator: elk\npreset: elk-quick\nmaterials: [WSe2]\n"
                    "convergence:\n  ladders:\n    ecutwfc: [45, 60]\n")
    with pytest.raises(InputError, match="cannot converge \\['ecutwfc'\\] with elk"):
        load_workflow(path)
    path.write_text("name: c\nkind: convergence\ncalculator: wien2k\npreset: test\nmaterials: [WSe2]\n"
                    "convergence:\n  ladders:\n    kmesh: [6, 9]\n")
    with pytest.raises(InputError, match="espresso or elk calculator"):
        load_workflow(path)
    path.write_text("name: c\nkind: convergence\ncalculator: elk\npreset: elk-quick\nmaterials: [WSe2]\n"
                    "convergence:\n  ladders:\n    elk_nempty: [4, 8.5]\n")
    with pytest.raises(InputError, match="not a whole number"):
        load_workflow(path)
