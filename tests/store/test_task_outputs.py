"""Typed task outputs (tmdflow.store.task_outputs): every stored key is a described field, the
stored form stays flat with only the keys written, unknown keys of other versions are kept, and
the task documents of real stores read back with the same keys and values."""

import json
from pathlib import Path

import bson.json_util
import pytest
from pydantic import ValidationError

from tmdflow.store.documents import TaskDocument
from tmdflow.store.task_outputs import TaskOutputs
from tests.helpers import FIXTURES

LEGACY_STORE = FIXTURES / "legacy_store" / "store.json"

#: the keys the writers set today (steps/context.py, steps/*.py, the WIEN2k and Elk adapters,
#: the relax ladder, the phonons step) and those found in real stores
WRITTEN_KEYS = {
    "total_energy_ev", "converged", "relax_converged", "n_scf_steps", "fermi_energy_ev", "max_force_ev_per_angstrom",
    "stress_diagonal_kbar", "n_electrons", "n_kpoints", "unconverged_eigenvalues", "pw_cpu_seconds",
    "pw_runs_interrupted", "postprocessing_cpu_seconds", "bandsx_wall_seconds", "scratch_freed_bytes",
    "relax_rungs", "slab_stress_kbar", "gap_ev_wien2k", "lattice_scan", "n_crystal_symmetries", "gap_ev_elk",
    "elk_warnings", "started_from", "bands_grid", "potential_from", "spin_states", "n_displacements",
    "reused_displacements", "stable", "verdict", "min_frequency_thz",
}


def _task(outputs) -> TaskDocument:
    return TaskDocument(task_id="MoS2-monolayer-test-abc-scf_soc", formula="MoS2", dimensionality="monolayer",
                        preset="test", step="scf_soc", calculator="espresso", outputs=outputs)


def test_every_written_key_is_a_field_with_a_description():
    fields = TaskOutputs.model_fields
    assert WRITTEN_KEYS <= set(fields)
    assert all(f.description for f in fields.values())
    units = ("_ev", "_kbar", "_seconds", "_bytes", "_angstrom", "_thz")
    for name in fields:  # a unit in the name is a unit in the description
        if name.endswith(units):
            assert "(" in fields[name].description, name


def test_the_stored_form_is_flat_and_holds_only_the_keys_written():
    written = {"total_energy_ev": -1234.5, "converged": True, "unconverged_eigenvalues": None,
               "stress_diagonal_kbar": [1.5, 1.5, -0.25], "pw_runs_interrupted": 0}
    task = _task(written)
    assert task.model_dump(mode="json")["outputs"] == written  # None kept where written, nothing added
    assert task.outputs.converged is True and task.outputs.n_scf_steps is None  # unset reads None
    task.outputs.scratch_freed_bytes = 4096  # a step adding to its task afterwards
    assert task.model_dump()["outputs"] == {**written, "scratch_freed_bytes": 4096}
    assert _task({}).model_dump()["outputs"] == {}


def test_assignment_and_input_are_validated():
    with pytest.raises(ValidationError, match="n_scf_steps"):
        _task({"n_scf_steps": "many"})
    task = _task({})
    with pytest.raises(ValidationError, match="converged"):
        task.outputs.converged = "perhaps"


def test_unknown_keys_of_other_versions_are_kept():
    doc = _task({"converged": True, "a_key_of_a_newer_version": {"x": [1, 2]}}).model_dump(mode="json")
    again = TaskDocument.model_validate(json.loads(json.dumps(doc)))
    assert again.outputs.a_key_of_a_newer_version == {"x": [1, 2]}
    assert again.model_dump(mode="json")["outputs"] == doc["outputs"]


def test_nested_outputs_are_typed_and_older_forms_load():
    slab = {"sigma_xx": 0.41, "sigma_zz": -0.5}  # written before sigma_zz_basis existed
    rung = {"directory": "/r/relax", "ecutwfc": 45.0, "ecutrho": 360.0, "a_angstrom": 3.19, "sigma_zz_basis_kbar": -0.4,
            "passed": True, "pw_cpu_seconds": None, "wall_seconds": 12.5, "reused": False}  # before interrupted_runs
    task = _task({"slab_stress_kbar": slab, "relax_rungs": [rung]})
    assert task.outputs.slab_stress_kbar.sigma_zz_basis is None and task.outputs.relax_rungs[0].a_angstrom == 3.19
    assert task.model_dump(mode="json")["outputs"] == {"slab_stress_kbar": slab, "relax_rungs": [rung]}
    with pytest.raises(ValidationError, match="sigma_xx"):
        _task({"slab_stress_kbar": {"sigma_zz": 1.0}})


@pytest.mark.parametrize("store", [LEGACY_STORE, Path.home() / ".local/share/tmdflow/store.json"])
def test_the_task_documents_of_real_stores_read_back_unchanged(store):
    if not store.is_file():
        pytest.skip(f"no store at {store}")
    data = bson.json_util.loads(store.read_text())  # read only
    docs = [doc for _, doc in data["tmdflow"]["tasks"]["documents"]]
    assert docs
    for raw in docs:
        task = TaskDocument.model_validate({k: v for k, v in raw.items() if k != "_id"})
        assert task.model_dump(mode="json")["outputs"] == raw["outputs"]
        assert set(raw["outputs"]) <= set(TaskOutputs.model_fields)  # no key of today's stores is untyped


def test_outputs_are_attributes_not_a_dict():
    task = _task({"converged": True})
    task.outputs.pw_cpu_seconds = 12.0
    assert task.outputs.pw_cpu_seconds == 12.0 and task.outputs.n_scf_steps is None  # not written: None
    assert task.outputs.written() == {"converged": True, "pw_cpu_seconds": 12.0}  # stored: what was written
    with pytest.raises(TypeError):
        task.outputs["pw_cpu_seconds"]  # the transition's dict form is gone
    with pytest.raises(TypeError):
        task.outputs["n_scf_steps"] = 3
