"""Result identity (tmdflow.identity): different inputs never share a result, the same inputs
always do.  Measured before: a workflow with ``overrides: {kmesh: 6}`` overwrote another's MoS2
results (same task and material documents, same run directory)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tmdflow.identity import is_legacy_id, settings_hash, structure_source
from tmdflow.presets import load_preset
from tmdflow.steps import StepRequest, resolve_identity
from tmdflow.store.documents import MaterialDocument
from tmdflow.analysis.table1 import render, table1_rows
from tests.helpers import FIXTURES, cli_env, run_tmdflow


KEY = re.compile(r"MoS2-monolayer-test-[0-9a-f]{10}")


def _request(preset=None, **kw):
    kw.setdefault("source", structure_source("MoS2", "monolayer", None, "relax"))
    return StepRequest("w", "MoS2", "monolayer", preset or load_preset("test"), "scf_soc", **kw)


def test_same_inputs_same_identity_and_every_input_changes_it(qe_settings):
    base = resolve_identity(_request(), qe_settings)
    assert KEY.fullmatch(base.material_id) and base.task_id == base.material_id + "-scf_soc"
    assert resolve_identity(_request(), qe_settings).material_id == base.material_id  # deterministic
    # the workflow's name and the step change no number: same result
    other_name = resolve_identity(StepRequest("other", "MoS2", "monolayer", load_preset("test"), "bands_soc",
                                              source=_request().source), qe_settings)
    assert other_name.material_id == base.material_id
    variants = {
        "kmesh override": _request(load_preset("test", {"kmesh": 6})),
        "another preset with the same name's values changed": _request(load_preset("test", {"ecutwfc": 50.0})),
        "no relax step": _request(source=structure_source("MoS2", "monolayer", None, None)),
        "a user's geometry": _request(source=structure_source("MoS2", "monolayer", {"a": 3.2, "d": 1.56}, "relax")),
        "another calculator": StepRequest("w", "MoS2", "monolayer", load_preset("test"), "scf_soc",
                                          calculator="wien2k", source=_request().source),
    }
    ids = {name: resolve_identity(r, qe_settings).material_id for name, r in variants.items()}
    assert base.material_id not in ids.values(), ids
    assert len(set(ids.values())) == len(ids), ids


def test_pseudopotential_files_are_part_of_the_identity(qe_settings, tmp_path):
    generated = resolve_identity(_request(), qe_settings)
    # the same files, copied into a user directory: the same numbers, the same identity
    user = tmp_path / "upf"
    user.mkdir()
    for el in ("Mo", "S"):
        (src,) = [p for p in qe_settings.pseudo_dir.glob(f"pslibrary-paw/{el}.rel2*.UPF")] or \
                 [p for p in qe_settings.pseudo_dir.rglob(f"{el}*rel2*") if p.suffix.lower() == ".upf"]
        shutil.copy(src, user / f"{el}.upf")
    with_user = qe_settings.replace(user_pseudo_dir=user)
    copied = resolve_identity(_request(), with_user)
    # the generated chain also uses the scalar-relativistic files; the user's directory only its
    # fully relativistic ones: a different set of files is a different result
    assert copied.material_id != generated.material_id
    # one byte more in one file: another result
    (user / "S.upf").write_text((user / "S.upf").read_text() + "\n")
    assert resolve_identity(_request(), with_user).material_id != copied.material_id


def test_settings_hash_is_stable_across_processes():
    """The hash of a preset is a function of its values alone (no object ids, no dict order):
    the value below was computed once and must never change for this identity version."""
    digest = settings_hash("espresso", load_preset("test"), structure_source("MoS2", "monolayer", None, "relax"))
    import subprocess
    import sys

    code = ("from tmdflow.identity import settings_hash, structure_source; from tmdflow.presets import load_preset;"
            "print(settings_hash('espresso', load_preset('test'), structure_source('MoS2','monolayer',None,'relax')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == digest


WF = ("name: {name}\ncalculator: wien2k\npreset: test\nmaterials: [MoS2]\nstructures: [bulk]\n"
      "steps: [scf_sr, scf_soc, bands_soc, analysis]\n{extra}")


def test_two_workflows_with_other_overrides_keep_their_own_results(tmp_path):
    """The measured case, with the fake WIEN2k for cheap steps: two workflows, the second with
    kmesh 6, each gets its own documents and run directory; query and table1 tell them apart."""
    env = cli_env(tmp_path)
    (tmp_path / "a.yaml").write_text(WF.format(name="plain", extra=""))
    (tmp_path / "b.yaml").write_text(WF.format(name="quick_k6", extra="overrides: {kmesh: 6}\n"))
    run_tmdflow(env, "submit", str(tmp_path / "a.yaml"))
    run_tmdflow(env, "submit", str(tmp_path / "b.yaml"))
    assert "already submitted" in run_tmdflow(env, "submit", str(tmp_path / "a.yaml")).stdout  # idempotent
    run_tmdflow(env, "launch")
    docs = json.loads(run_tmdflow(env, "query", "--fields", "material_id,overrides,workflow", "--json").stdout)
    assert len(docs) == 2 and len({d["material_id"] for d in docs}) == 2
    assert sorted((d["workflow"], d["overrides"]) for d in docs) == [("plain", "-"), ("quick_k6", "kmesh=6")]
    dirs = sorted(p.name for p in (tmp_path / "runs").glob("MoS2-bulk-test-wien2k-*"))
    assert sorted(d["material_id"] for d in docs) == dirs  # one run directory each
    table = run_tmdflow(env, "table1", "--format", "csv").stdout.splitlines()
    settings_col = [row.split(",")[1] for row in table[1:]]
    assert sorted(settings_col) == ["test", "test (kmesh=6)"]
    status = run_tmdflow(env, "status").stdout
    assert "overrides: kmesh=6" in status


LEGACY = FIXTURES / "legacy_store"


def test_a_store_written_before_identities_still_opens_and_is_never_overwritten(tmp_path):
    """tests/fixtures/legacy_store: a real store of the code before identities (README there)."""
    env = cli_env(tmp_path)
    shutil.copy(LEGACY / "store.json", tmp_path / "store.json")
    (tmp_path / "store.json").chmod(0o600)
    docs = json.loads(run_tmdflow(env, "query", "--fields", "material_id,overrides,workflow", "--json").stdout)
    assert docs == [{"material_id": "MoS2-bulk-test-wien2k", "overrides": "(legacy)", "workflow": "(legacy)"}]
    legacy = MaterialDocument.model_validate(_legacy_fields(tmp_path))
    assert legacy.identity is None and is_legacy_id(legacy.material_id) and legacy.settings_label == "test (legacy)"
    assert "test (legacy)" in run_tmdflow(env, "table1").stdout
    assert "READY" not in run_tmdflow(env, "status").stdout  # the old workflow: completed, as it was
    # the same workflow file again: a new submission (the old key had no settings hash) whose
    # results go to their own id; the legacy document stays as it was
    run_tmdflow(env, "submit", str(LEGACY / "workflow.yaml"))
    run_tmdflow(env, "launch")
    after = json.loads(run_tmdflow(env, "query", "--fields", "material_id,splitting,workflow", "--json").stdout)
    ids = sorted(d["material_id"] for d in after)
    assert ids[0] == "MoS2-bulk-test-wien2k" and re.fullmatch(r"MoS2-bulk-test-wien2k-[0-9a-f]{10}", ids[1])
    old, new = sorted(after, key=lambda d: d["material_id"])
    assert old["workflow"] == "(legacy)" and new["workflow"] == "legacy"
    assert old["splitting"] == new["splitting"]  # the same inputs: the same numbers
    report = tmp_path / "r.md"
    run_tmdflow(env, "report", "--format", "markdown", "-o", str(report))
    text = report.read_text()
    assert "MoS2 bulk (test (legacy), wien2k)" in text and "MoS2 bulk (test, wien2k, workflow legacy)" in text


def _legacy_fields(tmp_path) -> dict:
    import bson.json_util

    data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
    (doc,) = [d for _, d in data["materials"]["documents"] if d["material_id"] == "MoS2-bulk-test-wien2k"]
    return {k: v for k, v in doc.items() if k != "_id"}


def test_table1_tells_results_of_other_settings_apart():
    legacy = MaterialDocument.model_validate(_fixture_material())
    rows = table1_rows([legacy])
    assert rows[0]["settings"] == "test (legacy)" and "test (legacy)" in render(rows, "markdown")
    assert not is_legacy_id("MoS2-monolayer-test-0123456789")


def _fixture_material() -> dict:
    import bson.json_util

    data = bson.json_util.loads((LEGACY / "store.json").read_text())["tmdflow"]
    (doc,) = [d for _, d in data["materials"]["documents"]]
    return {k: v for k, v in doc.items() if k != "_id"}


def test_keys_of_other_codes_do_not_change_a_result():
    """A preset key another code reads (wien2k_*, elk_*) changes no Quantum ESPRESSO number: the
    espresso identity ignores it, the code that reads it does not."""
    source = structure_source("MoS2", "monolayer", None, "relax")
    base = load_preset("test")
    other = load_preset("test", {"wien2k_rkmax": 8.0})
    assert settings_hash("espresso", other, source) == settings_hash("espresso", base, source)
    assert settings_hash("wien2k", other, source) != settings_hash("wien2k", base, source)
    assert settings_hash("espresso", load_preset("test", {"kmesh": 6}), source) != settings_hash("espresso", base, source)
