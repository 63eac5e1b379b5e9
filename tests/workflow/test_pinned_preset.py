"""A chain's preset is pinned when it is submitted: its resolved values are stored once, under their
hash (tmdflow.store.pinned_presets), every Firetask carries that hash and the chain's settings hash,
a step builds its preset from the stored values (editing or deleting the preset file afterwards
changes nothing), and a pinned preset missing or altered in the store, or values that give another
identity under the running code, stop the step before anything runs.  Firetasks that carry the
whole values (submitted by the tmdflow of 2026-12-01) run with those; Firetasks stored before
pinning read the preset files, as they always did.  The preset files edited here are a copy of
inputs/ (TMDFLOW_INPUTS); the steps that run come from the fake WIEN2k (tests/fake_wien2k, a test
double)."""

import dataclasses
import shutil
from contextlib import contextmanager

import bson.json_util
import pytest
from fireworks.utilities.fw_serializers import load_object

from tests.helpers import ROOT, WORKFLOW_TEMPLATE, cli_env, run_tmdflow, stored_fireworks
from tmdflow import identity
from tmdflow.errors import InputError
from tmdflow.fireworks import submit
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings
from tmdflow.store import connection
from tmdflow.store.pinned_presets import PINNED_PRESETS, load_pinned, pin_preset
from tmdflow.workflow_spec import WorkflowSpec

CHAIN = "scf_sr, scf_soc, bands_soc, analysis"
PINS = ("preset_hash", "settings_hash")


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A copy of inputs/ that this test's commands (and this process) read the presets from."""
    copy = tmp_path / "inputs"
    shutil.copytree(ROOT / "inputs", copy)
    monkeypatch.setenv("TMDFLOW_INPUTS", str(copy))
    return copy


def _submit(tmp_path, calc="wien2k", steps=CHAIN):
    env = cli_env(tmp_path)  # TMDFLOW_INPUTS from the fixture is in os.environ, hence in env
    (tmp_path / "wf.yaml").write_text(WORKFLOW_TEMPLATE.format(calc=calc, steps=steps))
    out = run_tmdflow(env, "submit", str(tmp_path / "wf.yaml")).stdout
    return env, out


def _edit_test_preset(inputs, old="kmesh: 3", new="kmesh: 4"):
    path = inputs / "presets" / "test.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _task(fw_doc):
    """The Firetask of a stored Firework, as FireWorks deserialises it before running it."""
    return load_object(fw_doc["spec"]["_tasks"][0])


@contextmanager
def _store(tmp_path):
    """The test's embedded store opened in this process as its writer; saved and released at the
    end, so that the next command can open it."""
    conn = connection.connect(load_settings(db_uri=f"embedded:{tmp_path / 'store.json'}", work_dir=tmp_path / "runs"))
    try:
        yield conn
    finally:
        conn.checkpoint()
        conn.embedded.close()
        connection.reset_cache()


def _edit_stored_tasks(tmp_path, edit):
    """Change the Firetask params of every Firework in the embedded store (``edit(params, db)``)."""
    with _store(tmp_path) as conn:
        for doc in conn.launchpad.fireworks.find({}):
            params = doc["spec"]["_tasks"][0]
            edit(params, conn.db)
            conn.launchpad.fireworks.update_one({"fw_id": doc["fw_id"]}, {"$set": {"spec._tasks": [params]}})


def _repin(task, db, values):
    """Pin ``task`` to ``values`` as a submission of them would have."""
    task["preset_hash"] = pin_preset(db, values)


def test_submitted_steps_carry_the_resolved_preset_and_the_chain_hash(tmp_path, inputs):
    _, out = _submit(tmp_path)
    submitted = load_preset("test")
    fws = stored_fireworks(tmp_path)
    assert len(fws) == 4
    with _store(tmp_path) as conn:
        (pinned,) = conn.db[PINNED_PRESETS].find({})  # one document for the whole submission
    assert pinned["values"] == dataclasses.asdict(submitted)
    assert pinned["_id"] == identity.content_hash(pinned["values"])  # stored under its content's hash
    hashes = set()
    for doc in fws.values():
        params = doc["spec"]["_tasks"][0]
        assert params["preset_hash"] == pinned["_id"]
        assert not set(pinned["values"]) & set(params)  # not repeated
        assert params["settings_hash"] == identity.settings_hash("wien2k", submitted, params["source"])
        hashes.add(params["settings_hash"])
    (digest,) = hashes  # one chain, one identity
    assert f"@{digest[:10]}" in out  # the workflow key's hash is the pinned one


def test_editing_or_deleting_the_preset_file_after_submit_changes_no_submitted_step(tmp_path, inputs):
    _submit(tmp_path)
    submitted = load_preset("test")
    _edit_test_preset(inputs)
    assert load_preset("test").kmesh == 4  # the edit is what a new submission would get
    fws = stored_fireworks(tmp_path)
    with _store(tmp_path) as conn:
        for doc in fws.values():
            request = _task(doc).step_request(doc["spec"], conn.db)
            assert request.preset == submitted and request.preset.kmesh == 3
            assert request.settings_digest == doc["spec"]["_tasks"][0]["settings_hash"]
        (inputs / "presets" / "test.yaml").unlink()  # not even its file is read again
        doc = fws["MoS2-bulk-bands_soc"]
        assert _task(doc).step_request(doc["spec"], conn.db).preset == submitted


def test_each_distinct_preset_is_stored_once_whatever_the_number_of_chains(tmp_path, inputs):
    spec = WorkflowSpec(name="many", calculator="wien2k", preset="test", materials=["MoS2", "WSe2"],
                        structures=["monolayer", "bulk"], steps=["scf_sr", "scf_soc", "bands_soc", "analysis"])
    finer = spec.model_copy(update={"name": "finer", "overrides": {"kmesh": 4}})
    with _store(tmp_path) as conn:
        submit(conn, spec)
        submit(conn, spec, force=True)  # a second batch of the same preset
        submit(conn, spec)  # already submitted: nothing added, the same document written again
        submit(conn, finer)  # another resolved preset: a second document
        pinned = {doc["_id"]: doc["values"] for doc in conn.db[PINNED_PRESETS].find({})}
        tasks = [fw["spec"]["_tasks"][0] for fw in conn.launchpad.fireworks.find({})]
    assert len(tasks) == 3 * 4 * 4 and len(pinned) == 2
    assert {t["preset_hash"] for t in tasks} == set(pinned)
    assert sorted(v["kmesh"] for v in pinned.values()) == [3, 4]
    assert sum(t["preset_hash"] == next(h for h, v in pinned.items() if v["kmesh"] == 4) for t in tasks) == 16


def test_a_pinned_preset_missing_from_the_store_stops_the_step_and_resubmitting_restores_it(tmp_path, inputs):
    env, _ = _submit(tmp_path)
    with _store(tmp_path) as conn:
        (pinned,) = conn.db[PINNED_PRESETS].find({})
        conn.db[PINNED_PRESETS].delete_many({})
    proc = run_tmdflow(env, "launch", ok=False)
    assert proc.returncode == 70  # a Firework failed
    assert (f"MoS2-bulk-scf_sr FAILED: tmdflow.errors.InputError: MoS2-bulk step scf_sr: the pinned preset "
            f"{pinned['_id']} of this workflow is not in the store") in proc.stderr
    states = {n: d["state"] for n, d in stored_fireworks(tmp_path).items()}
    assert states["MoS2-bulk-scf_sr"] == "FIZZLED" and states["MoS2-bulk-scf_soc"] == "WAITING"
    assert not list((tmp_path / "runs").glob("MoS2-*"))  # no run directory: nothing ran
    # the remedy: a resubmission of the same preset stores it again under the same hash
    assert "already submitted" in run_tmdflow(env, "submit", str(tmp_path / "wf.yaml")).stdout
    run_tmdflow(env, "rerun", str(stored_fireworks(tmp_path)["MoS2-bulk-scf_sr"]["fw_id"]))
    run_tmdflow(env, "launch")
    assert {d["state"] for d in stored_fireworks(tmp_path).values()} == {"COMPLETED"}


def test_an_altered_pinned_preset_stops_the_step_naming_both_hashes(tmp_path, inputs):
    _submit(tmp_path)
    task, spec = _stored_task(tmp_path)
    with _store(tmp_path) as conn:
        conn.db[PINNED_PRESETS].update_one({"_id": task["preset_hash"]}, {"$set": {"values.kmesh": 4}})  # by hand
        altered = identity.content_hash(conn.db[PINNED_PRESETS].find_one({})["values"])
        with pytest.raises(InputError) as err:
            task.step_request(spec, conn.db)
    exc = err.value
    assert exc.exit_code == 2 and "\n" not in exc.problem
    assert exc.problem == (f"MoS2-bulk step bands_soc: the pinned preset {task['preset_hash']} of this workflow is "
                           f"not in the store: the document under that hash in 'pinned_presets' holds values whose "
                           f"hash is {altered} (it was altered); nothing was run")
    assert exc.remedy.startswith("resubmit the workflow") and "tmdflow db restore" in exc.remedy


def test_a_chain_and_its_reruns_keep_the_submitted_preset_when_the_file_changes(tmp_path, inputs):
    env, _ = _submit(tmp_path)
    run_tmdflow(env, "launch", "--max-launches", "1")  # the SR SCF only
    _edit_test_preset(inputs)
    run_tmdflow(env, "launch")
    fws = stored_fireworks(tmp_path)
    assert {d["state"] for d in fws.values()} == {"COMPLETED"}
    data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
    tasks = [doc for _, doc in data["tasks"]["documents"]]
    (material,) = [doc for _, doc in data["materials"]["documents"]]
    assert len(tasks) == 3 and {t["task_id"].rsplit("-", 1)[0] for t in tasks} == {material["material_id"]}
    assert {t["inputs"]["preset"]["kmesh"] for t in tasks} == {3}  # every step at the submitted mesh
    pinned = fws["MoS2-bulk-scf_sr"]["spec"]["_tasks"][0]["settings_hash"]
    assert material["identity"]["settings_hash"] == pinned
    assert [p.name for p in (tmp_path / "runs").glob("MoS2-*")] == [material["material_id"]]  # one run directory
    run_tmdflow(env, "rerun", str(fws["MoS2-bulk-bands_soc"]["fw_id"]))  # a rerun keeps the pinned preset too
    run_tmdflow(env, "launch")
    assert {d["state"] for d in stored_fireworks(tmp_path).values()} == {"COMPLETED"}
    data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
    assert {doc["task_id"]: doc["inputs"]["preset"]["kmesh"] for _, doc in data["tasks"]["documents"]} == \
        {t["task_id"]: 3 for t in tasks}
    assert [p.name for p in (tmp_path / "runs").glob("MoS2-*")] == [material["material_id"]]


def _stored_task(tmp_path, name="MoS2-bulk-bands_soc"):
    doc = stored_fireworks(tmp_path)[name]
    return _task(doc), doc["spec"]


@contextmanager
def _as_submitted(tmp_path, edit, calc="wien2k"):
    """The stored bands_soc task as another tmdflow would have submitted it: its pinned values
    changed by ``edit(values)``, with the settings hash they made then; yields (task, fw_spec, db)."""
    task, spec = _stored_task(tmp_path)
    with _store(tmp_path) as conn:
        values = load_pinned(conn.db, task["preset_hash"])
        edit(values)
        _repin(task, conn.db, values)
        task["settings_hash"] = identity.settings_hash(calc, values, task["source"])
        yield task, spec, conn.db


def test_a_key_the_code_gained_since_submit_stops_the_step_naming_it(tmp_path, inputs):
    _submit(tmp_path)
    # as submitted by a tmdflow without wien2k_rkmax: its values and the hash they made then
    with _as_submitted(tmp_path, lambda values: values.pop("wien2k_rkmax")) as (task, spec, db):
        with pytest.raises(InputError) as err:
            task.step_request(spec, db)
    exc = err.value
    assert exc.exit_code == 2 and exc.keys == ["wien2k_rkmax"]
    assert "MoS2-bulk step bands_soc: the preset 'test' pinned when the workflow was submitted gives another " \
           "identity" in exc.problem
    assert "wien2k_rkmax (not in the submitted preset; now 7.0)" in exc.problem and "nothing was run" in exc.problem
    assert "\n" not in exc.problem  # one line: the reason 'tmdflow launch' and 'status' show
    assert "resubmit the workflow" in exc.remedy and "tmdflow rerun" in exc.remedy


def test_a_key_the_code_no_longer_has_stops_the_step_naming_it(tmp_path, inputs):
    _submit(tmp_path)

    def with_old_knob(values):
        values["wien2k_old_knob"] = 3  # a key of this code, gone from today's Preset

    with _as_submitted(tmp_path, with_old_knob) as (task, spec, db):
        with pytest.raises(InputError, match=r"wien2k_old_knob \(submitted 3; no longer a preset key\)") as err:
            task.step_request(spec, db)
    assert err.value.keys == ["wien2k_old_knob"]


def test_a_changed_definition_of_the_identity_stops_the_step(tmp_path, inputs, monkeypatch):
    _submit(tmp_path)
    task, spec = _stored_task(tmp_path)
    monkeypatch.setattr(identity, "IDENTITY_VERSION", identity.IDENTITY_VERSION + 1)
    with _store(tmp_path) as conn:
        with pytest.raises(InputError, match="no preset key differs: the identity's definition did") as err:
            task.step_request(spec, conn.db)
    assert f"settings hash {task['settings_hash'][:10]} -> " in err.value.problem


def test_pinned_values_this_code_refuses_stop_the_step(tmp_path, inputs):
    _submit(tmp_path)

    def mesh_zero(values):
        values["kmesh"] = 0  # e.g. a bound tightened since the submission

    with _as_submitted(tmp_path, mesh_zero) as (task, spec, db):
        with pytest.raises(InputError, match="the preset 'test' pinned when the workflow was submitted is not valid "
                                             "under this tmdflow: kmesh = 0 is outside") as err:
            task.step_request(spec, db)
    assert err.value.exit_code == 2 and err.value.keys == ["kmesh"] and "resubmit" in err.value.remedy


def test_a_key_of_another_code_gained_since_submit_changes_nothing(tmp_path, inputs):
    _submit(tmp_path, calc="espresso", steps="scf_soc, bands_soc, analysis")
    # the incident's key: Elk's, not read by pw.x runs
    with _as_submitted(tmp_path, lambda values: values.pop("elk_epsforce"), "espresso") as (task, spec, db):
        request = task.step_request(spec, db)
    assert request.settings_digest == task["settings_hash"]  # the same identity: the step runs
    assert request.preset.elk_epsforce == load_preset("test").elk_epsforce  # today's value, for completeness


def test_a_changed_pinned_identity_fails_the_step_before_anything_runs(tmp_path, inputs):
    env, _ = _submit(tmp_path)

    def as_submitted_without_rkmax(params, db):
        values = load_pinned(db, params["preset_hash"])
        del values["wien2k_rkmax"]
        _repin(params, db, values)
        params["settings_hash"] = identity.settings_hash("wien2k", values, params["source"])

    _edit_stored_tasks(tmp_path, as_submitted_without_rkmax)
    proc = run_tmdflow(env, "launch", ok=False)
    assert proc.returncode == 70  # a Firework failed
    assert "MoS2-bulk-scf_sr FAILED: tmdflow.errors.InputError: MoS2-bulk step scf_sr: the preset 'test' pinned" \
           in proc.stderr and "wien2k_rkmax (not in the submitted preset" in proc.stderr
    states = {n: d["state"] for n, d in stored_fireworks(tmp_path).items()}
    assert states["MoS2-bulk-scf_sr"] == "FIZZLED" and states["MoS2-bulk-scf_soc"] == "WAITING"
    assert not list((tmp_path / "runs").glob("MoS2-*"))  # no run directory: nothing ran
    status = run_tmdflow(env, "status").stdout
    assert "FIZZLED  -- tmdflow.errors.InputError: MoS2-bulk step scf_sr" in status


def test_a_step_stored_before_pinning_reads_the_preset_files_as_it_did(tmp_path, inputs):
    env, _ = _submit(tmp_path)
    before = load_preset("test")

    def old_style(params, db):
        for key in PINS:
            params.pop(key, None)

    _edit_stored_tasks(tmp_path, old_style)
    doc = stored_fireworks(tmp_path)["MoS2-bulk-scf_soc"]
    assert not set(PINS) & set(doc["spec"]["_tasks"][0])
    task = _task(doc)
    with _store(tmp_path) as conn:
        assert task.step_request(doc["spec"], conn.db).preset == before
        _edit_test_preset(inputs)
        assert task.step_request(doc["spec"], conn.db).preset.kmesh == 4  # the file as it is now, as before pinning
    _edit_test_preset(inputs, "kmesh: 4", "kmesh: 3")
    run_tmdflow(env, "launch")  # an old-style chain runs as it always did
    assert {d["state"] for d in stored_fireworks(tmp_path).values()} == {"COMPLETED"}


def test_a_convergence_study_is_pinned_and_checked_before_it_runs(tmp_path, inputs, monkeypatch):
    spec = WorkflowSpec(name="conv", kind="convergence", preset="test", materials=["MoS2"],
                        convergence={"ladders": {"kmesh": [3, 4]}, "tolerance_mev": 2.0})
    monkeypatch.setenv("TMDFLOW_DB_URI", f"embedded:{tmp_path / 'store.json'}")  # the task's store (task_settings)
    with _store(tmp_path) as conn:
        submit(conn, spec)
        (fw,) = conn.launchpad.fireworks.find({})
        task = _task(fw)
        values = load_pinned(conn.db, task["preset_hash"])
        assert values == dataclasses.asdict(load_preset("test"))
        del values["ecutwfc"]  # as submitted by a tmdflow without the key
        _repin(task, conn.db, values)
        with pytest.raises(InputError, match=r"MoS2 convergence study: .*ecutwfc \(not in the submitted preset"):
            task.run_task({})  # before any pw.x run
        task["preset_hash"] = "0" * 64
        with pytest.raises(InputError, match="MoS2 convergence study: the pinned preset 0{64} of this workflow is "
                                             "not in the store"):
            task.run_task({})


def test_the_pinned_preset_on_mongodb_passes_the_strict_server_checks(strict_mongo, tmp_path, inputs):
    """The collection goes through the strict server of tests/strict_mongo.py like every other: its
    writes are checked as a server would, and a read-only user (a launcher needs no more) loads it."""
    spec = WorkflowSpec(name="mongo", preset="test", materials=["MoS2"], steps=["scf_soc", "bands_soc", "analysis"])
    conn = connection.connect(load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=strict_mongo.uri,
                                            work_dir=tmp_path / "runs"))
    submit(conn, spec)
    submit(conn, spec, force=True)
    assert (PINNED_PRESETS, "replace_one") in strict_mongo.writes
    (pinned,) = strict_mongo.client["tmdflow"][PINNED_PRESETS].find({})
    assert pinned["_id"] == identity.content_hash(pinned["values"])
    fws = list(conn.launchpad.fireworks.find({}))
    assert len(fws) == 6 and {fw["spec"]["_tasks"][0]["preset_hash"] for fw in fws} == {pinned["_id"]}
    strict_mongo.readonly = True
    assert _task(fws[0]).step_request(fws[0]["spec"], conn.db).preset == load_preset("test")
