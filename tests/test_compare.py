"""``tmdflow table1 --compare``: Table I from several methods side by side (tmdflow.compare), on the
real documents of tests/fixtures/compare_store (QE quick and Elk elk-quick results of this
project's runs, and one real QE convergence study; README there)."""

from __future__ import annotations

import csv
import io
import json
import os

import bson.json_util
import pytest
from click.testing import CliRunner

from tmdflow.compare import (
    MEASURED_ERROR_BARS, PAPER_METHOD, Study, comparison_rows, error_bars_of, method_of, parse_calculators,
    render_comparison,
)
from tmdflow.errors import InputError
from tmdflow.store.documents import ConvergenceDoc, MaterialDocument, TaskDocument
from tests.helpers import FIXTURES

FIXTURE = FIXTURES / "compare_store" / "documents.json"


@pytest.fixture(scope="module")
def real():
    data = bson.json_util.loads(FIXTURE.read_text())
    materials = [MaterialDocument.model_validate(m) for m in data["materials"]]
    tasks = {t["task_id"]: TaskDocument.model_validate(t) for t in data["tasks"]}
    studies = [ConvergenceDoc.model_validate(c) for c in data["convergence"]]
    return materials, tasks, studies


def _settings_of(tasks):
    return lambda m: dict(tasks[f"{m.material_id}-bands_soc"].inputs["preset"])


def _doc(materials, formula, calculator):
    return next(m for m in materials if m.formula == formula and m.calculator == calculator)


def _variant(doc: MaterialDocument, suffix: str, **changes) -> MaterialDocument:
    """The same stored numbers under another id and settings (a relabelled copy: what the grouping
    sees of a second result, not a new measurement)."""
    identity = doc.identity.model_copy(update=changes.pop("identity", {}))
    return doc.model_copy(update={"material_id": f"{doc.material_id}{suffix}", "identity": identity, **changes})


def test_a_method_is_the_code_and_its_spin_orbit_treatment(real):
    materials, _, _ = real
    qe, elk = _doc(materials, "MoS2", "espresso"), _doc(materials, "MoS2", "elk")
    assert (qe.spin_orbit_mode, elk.spin_orbit_mode) == ("scf", "scf")  # Elk inherits the QE preset key
    assert method_of(qe).label == "QE FR scf" and method_of(qe).basis == "pseudopotentials"
    assert method_of(elk).label == "Elk all-electron second-var."  # whatever spin_orbit_mode says
    sv = qe.model_copy(update={"spin_orbit_mode": "second_variational"})
    assert method_of(sv).label == "QE second-var." and method_of(sv) != method_of(qe)
    with pytest.raises(InputError, match="spin_orbit_mode 'noncollinear'"):
        method_of(qe.model_copy(update={"spin_orbit_mode": "noncollinear"}))


def test_rows_per_formula_paper_first_then_methods_in_the_order_asked(real):
    materials, tasks, _ = real
    rows = comparison_rows(materials, ["espresso", "elk"], _settings_of(tasks))
    assert [(r.formula, r.method) for r in rows[:3]] == [
        ("MoS2", PAPER_METHOD), ("MoS2", "QE FR scf"), ("MoS2", "Elk all-electron second-var.")]
    assert [r.formula for r in rows if r.method == PAPER_METHOD] == ["MoS2", "MoSe2", "WS2", "WSe2"]
    by = {(r.formula, r.method): r for r in rows}
    assert by["WSe2", PAPER_METHOD].values == {"dvb": 456, "dgk": 530}
    assert ("WSe2", "Elk all-electron second-var.") not in by  # no Elk WSe2 in the store: no row
    elk = by["WS2", "Elk all-electron second-var."].values
    assert elk["dvb"] == pytest.approx(419.376, abs=1e-3) and elk["dvb_dev"] == pytest.approx(419.376 - 426, abs=1e-3)
    assert elk["dcb"] < 0 < by["MoS2", "Elk all-electron second-var."].values["dcb"]  # signed, as in table1
    rows_elk_first = comparison_rows(materials, ["elk", "espresso"], _settings_of(tasks))
    assert [r.method for r in rows_elk_first[:3]] == [PAPER_METHOD, "Elk all-electron second-var.", "QE FR scf"]
    only_qe = comparison_rows(materials, ["espresso"], _settings_of(tasks))
    assert {r.method for r in only_qe} == {PAPER_METHOD, "QE FR scf"}


def test_results_of_other_settings_are_never_merged(real):
    materials, tasks, _ = real
    qe = _doc(materials, "MoS2", "espresso")
    k9 = _variant(qe, "k9", identity={"overrides": {"kmesh": 9}})
    other_files = _variant(qe, "x")  # the same label, another result hash
    sv = _variant(qe, "sv", spin_orbit_mode="second_variational", preset="second_variational")
    settings = {m.material_id: _settings_of(tasks)(qe) for m in (qe, k9, other_files, sv)}
    rows = comparison_rows([qe, k9, other_files, sv], ["espresso"], lambda m: settings[m.material_id])
    shown = [(r.method, r.settings) for r in rows if r.method != PAPER_METHOD]
    assert len(shown) == 4 == len(set(shown))  # one row each: nothing merged
    assert ("QE FR scf", k9.settings_label) in shown and k9.settings_label != qe.settings_label
    assert {s for m, s in shown if s.startswith("quick [")} == {f"quick [{qe.material_id.rsplit('-', 1)[-1]}]",
                                                                f"quick [{other_files.material_id.rsplit('-', 1)[-1]}]"}
    assert shown[-1] == ("QE second-var.", "second_variational")  # after the self-consistent mode


def test_error_bars_come_from_the_store_else_the_measured_table_else_none(real):
    materials, tasks, studies = real
    settings = _settings_of(tasks)
    stored = [Study.from_document(d) for d in studies]
    assert [s.convergence_id for s in stored] == ["MoS2-monolayer-test"]  # a real vacuum-only study
    mos2, wse2 = _doc(materials, "MoS2", "espresso"), _doc(materials, "WSe2", "espresso")
    bars = error_bars_of(mos2, settings(mos2), stored)  # quick is above the test study's 3x3x1, 10 A
    assert bars.source == "store: MoS2-monolayer-test"
    assert bars.values_mev["delta_vb_k_mev"] == pytest.approx(0.0075, abs=1e-4)
    measured = error_bars_of(wse2, settings(wse2), stored)  # no WSe2 study stored: docs/physics.md
    assert measured.source == "measured: docs/physics.md, Error bars"
    assert measured.values_mev == pytest.approx({"delta_vb_k_mev": 0.08, "delta_cb_k_mev": 0.02,
                                                 "delta_e_gamma_k_mev": 1.70})
    elk = _doc(materials, "MoS2", "elk")
    assert error_bars_of(elk, settings(elk), stored).source == "none"  # a QE study never covers Elk
    assert error_bars_of(elk, settings(elk), stored).values_mev is None
    # the measured Elk table (WSe2) applies to an Elk WSe2 result at settings >= elk-quick's, not below
    wse2_elk = _variant(elk, "w", formula="WSe2")
    at_quick = settings(elk)
    assert error_bars_of(wse2_elk, at_quick, []).source == "measured: docs/physics.md, Elk's own convergence"
    assert error_bars_of(wse2_elk, {**at_quick, "elk_rgkmax": 6.0}, []).source == "none"
    assert error_bars_of(wse2_elk, {**at_quick, "elk_rmt": 2.3}, []).source == "none"  # another method
    assert error_bars_of(wse2_elk, {**at_quick, "kmesh": 16, "vacuum": 30.0, "elk_lmaxapw": 10}, []).source \
        == "measured: docs/physics.md, Elk's own convergence"  # elk-paper: an upper bound


def test_the_measured_elk_bar_is_the_root_sum_square_of_the_measured_steps():
    (elk,) = [m for m in MEASURED_ERROR_BARS if m.calculator == "elk"]
    # docs/physics.md, "Elk's own convergence", WSe2: rgkmax 7->8 +2.9, 64 empty states +2.4, ...
    assert elk.error_bars_mev["delta_vb_k_mev"] == pytest.approx((2.9**2 + 2.4**2 + 0.1**2 + 0.1**2) ** 0.5)
    assert elk.error_bars_mev["delta_e_gamma_k_mev"] == pytest.approx(11.50, abs=0.01)  # vacuum 10.5 dominates


def test_calculator_names_are_checked(real):
    assert parse_calculators("espresso, elk,espresso", ["elk", "espresso", "wien2k"]) == ["espresso", "elk"]
    with pytest.raises(InputError) as err:
        parse_calculators("espresso,vasp", ["elk", "espresso", "wien2k"])
    assert "vasp" in err.value.problem and "elk, espresso, wien2k" in err.value.remedy
    with pytest.raises(InputError, match="no calculator"):
        parse_calculators(" , ", ["elk"])


def test_formats_name_units_and_the_error_bar_source(real):
    materials, tasks, studies = real
    rows = comparison_rows(materials, ["espresso", "elk"], _settings_of(tasks), [Study.from_document(studies[0])])
    data = json.loads(render_comparison(rows, "json"))
    mos2_qe = next(r for r in data if r["formula"] == "MoS2" and r["method"] == "QE FR scf")
    assert mos2_qe["delta_vb_k_mev"] == 149.1 and mos2_qe["error_bar_source"] == "store: MoS2-monolayer-test"
    assert mos2_qe["delta_vb_k_error_bar_mev"] == 0.0  # 0.0075 meV, rounded as shown
    table = list(csv.DictReader(io.StringIO(render_comparison(rows, "csv"))))
    assert len(table) == len(rows) and table[0]["method"] == PAPER_METHOD and table[0]["delta_vb_k_mev"] == "148.0"
    md = render_comparison(rows, "markdown")
    assert "| MoSe2 | QE FR scf | quick | 186.1 | 0.1 | +3.1 |" in md
    assert "measured: docs/physics.md, Error bars: workflows/convergence.yaml" in md  # the legend says what it is
    assert "none: no convergence study applies" in md
    tex = render_comparison(rows, "latex")
    assert "WS$_{2}$ & Elk all-electron second-var. & elk-quick & $419.4$" in tex
    with pytest.raises(InputError, match="unknown format"):
        render_comparison(rows, "html")


def _store(tmp_path, real) -> dict:
    from tmdflow.settings import load_settings
    from tmdflow.store.connection import connect
    from tmdflow.store.results import ResultsStore

    materials, tasks, studies = real
    uri = f"embedded:{tmp_path / 'store.json'}"
    conn = connect(load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=uri))
    store = ResultsStore(conn.db)
    for m in materials:
        store.upsert_material(m)
    for t in tasks.values():
        store.upsert_task(t)
    for c in studies:
        store.put_convergence(c)
    conn.checkpoint()
    return {"TMDFLOW_DB_URI": uri, "TMDFLOW_CONFIG": os.devnull}


def test_cli_table1_compare(tmp_path, real):
    from tmdflow.cli import main

    env = _store(tmp_path, real)
    out = CliRunner().invoke(main, ["table1", "--compare", "espresso,elk"], env=env)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("| MX2 | method | settings | Δ_VB(K) (meV) | ± |")
    assert sum(1 for line in lines if line.startswith("| ")) == 1 + 4 + 4 + 3  # header, paper, QE, Elk rows
    assert "| MoS2 | QE FR scf | quick | 149.1 | 0.0 | +1.1 | +2.9 | 0.0 | 64.2 | 0.1 | +14.2 | 1.580 |" in out.output
    assert "store: MoS2-monolayer-test" in out.output
    out = CliRunner().invoke(main, ["table1", "--compare", "elk", "--format", "csv"], env=env)
    assert out.exit_code == 0 and {r["method"] for r in csv.DictReader(io.StringIO(out.output))} == {
        PAPER_METHOD, "Elk all-electron second-var."}
    out = CliRunner().invoke(main, ["table1", "--compare", "espresso", "--preset", "elk-quick"], env=env)
    assert out.exit_code == 0 and "QE FR scf" not in out.output  # --preset filters the results


def test_cli_table1_compare_errors(tmp_path, real):
    from tmdflow.cli import main

    env = _store(tmp_path, real)
    out = CliRunner().invoke(main, ["table1", "--compare", "espresso,vasp"], env=env)
    assert out.exit_code == InputError.exit_code == 2
    assert "unknown calculator 'vasp'" in out.output and "elk, espresso, wien2k" in out.output
    out = CliRunner().invoke(main, ["table1", "--compare", "elk", "--calculator", "elk"], env=env)
    assert out.exit_code == 2 and "--calculator and --compare" in out.output
    out = CliRunner().invoke(main, ["table1"], env=env)  # without --compare: table1 as before
    assert out.exit_code == 0 and "MoS2 (elk)" in out.output


def test_an_elk_study_stored_by_the_convergence_task_gives_elk_results_their_bars(tmp_path, real, monkeypatch):
    """The Firetask of `kind: convergence` with calculator elk, on the measured WSe2 numbers of
    tests/test_convergence.py (no Elk run): its document covers an elk-paper WSe2 result, not an
    elk-quick one (15 A < the study's 20 A: the measured table then), and no QE result."""
    import dataclasses

    import tmdflow.convergence
    from tmdflow.fireworks import TmdflowConvergenceTask
    from tmdflow.presets import load_preset
    from tmdflow.settings import load_settings
    from tmdflow.store.connection import connect
    from tmdflow.store.results import ResultsStore
    from .test_convergence import elk_wse2_measured_point

    uri = f"embedded:{tmp_path / 'store.json'}"
    for key, value in (("TMDFLOW_DB_URI", uri), ("TMDFLOW_CONFIG", os.devnull), ("TMDFLOW_WORK_DIR", str(tmp_path))):
        monkeypatch.setenv(key, value)
    calls = []

    def pipeline(formula, preset, settings, root, progress=None, calculator="espresso"):
        calls.append((formula, calculator, root.name))
        return elk_wse2_measured_point

    monkeypatch.setattr(tmdflow.convergence, "run_pipeline", pipeline)
    TmdflowConvergenceTask(formula="WSe2", preset="elk-quick", overrides={"elk_lmaxapw": 10}, tolerance_mev=4.0,
                           ladders={"elk_rgkmax": [7.0, 8.0], "kmesh": [6.0, 12.0], "vacuum": [15.0, 20.0]},
                           calculator="elk").run_task({})
    assert calls == [("WSe2", "elk", "WSe2-elk-quick-elk")]
    (doc,) = ResultsStore(connect(load_settings(), readonly=True).db).convergence()
    assert doc.convergence_id == "WSe2-monolayer-elk-quick-elk"
    assert doc.converged_settings["vacuum"] == 20.0 and doc.converged_settings["elk_rmt"] == 2.1
    study = Study.from_document(doc)

    materials, _, _ = real
    wse2_elk = _variant(_doc(materials, "MoS2", "elk"), "w", formula="WSe2")
    paper = dataclasses.asdict(load_preset("elk-paper"))
    quick = dataclasses.asdict(load_preset("elk-quick"))
    bars = error_bars_of(wse2_elk, paper, [study])
    assert bars.source == "store: WSe2-monolayer-elk-quick-elk"
    assert bars.values_mev["delta_vb_k_mev"] == pytest.approx((2.9**2 + 0.1**2) ** 0.5)
    assert error_bars_of(wse2_elk, quick, [study]).source == "measured: docs/physics.md, Elk's own convergence"
    wse2_qe = _doc(materials, "WSe2", "espresso")
    assert error_bars_of(wse2_qe, dataclasses.asdict(load_preset("quick")), [study]).source.startswith("measured")
