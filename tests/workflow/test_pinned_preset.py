"""A chain's preset is pinned when it is submitted: every Firetask carries the resolved preset and
the chain's settings hash, a step builds its preset from them (editing or deleting the preset file
afterwards changes nothing), and pinned values that give another identity under the running code
stop the step before anything runs.  Firetasks stored before pinning read the preset files, as
they always did.  The preset files edited here are a copy of inputs/ (TMDFLOW_INPUTS); the steps
that run come from the fake WIEN2k (tests/fake_wien2k, a test double)."""

import dataclasses
import shutil

import bson.json_util
import pytest
from fireworks.utilities.fw_serializers import load_object

from tests.helpers import ROOT, WORKFLOW_TEMPLATE, cli_env, run_tmdflow, stored_fireworks
from tmdflow import identity
from tmdflow.errors import InputError
from tmdflow.fireworks import build_workflows
from tmdflow.presets import load_preset
from tmdflow.workflow_spec import WorkflowSpec

CHAIN = "scf_sr, scf_soc, bands_soc, analysis"
PINS = ("preset_values", "settings_hash")


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


def _edit_stored_tasks(tmp_path, edit):
    """Change the Firetask params of every Firework in the embedded store (``edit(params)``)."""
    path = tmp_path / "store.json"
    data = bson.json_util.loads(path.read_text())
    for _, doc in data["tmdflow"]["fireworks"]["documents"]:
        edit(doc["spec"]["_tasks"][0])
    path.write_text(bson.json_util.dumps(data))


def test_submitted_steps_carry_the_resolved_preset_and_the_chain_hash(tmp_path, inputs):
    _, out = _submit(tmp_path)
    submitted = load_preset("test")
    fws = stored_fireworks(tmp_path)
    assert len(fws) == 4
    hashes = set()
    for doc in fws.values():
        params = doc["spec"]["_tasks"][0]
        assert params["preset_values"] == dataclasses.asdict(submitted)
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
    for doc in fws.values():
        request = _task(doc).step_request(doc["spec"])
        assert request.preset == submitted and request.preset.kmesh == 3
        assert request.settings_digest == doc["spec"]["_tasks"][0]["settings_hash"]
    (inputs / "presets" / "test.yaml").unlink()  # not even its file is read again
    doc = fws["MoS2-bulk-bands_soc"]
    assert _task(doc).step_request(doc["spec"]).preset == submitted


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


def test_a_key_the_code_gained_since_submit_stops_the_step_naming_it(tmp_path, inputs):
    _submit(tmp_path)
    task, spec = _stored_task(tmp_path)
    # as submitted by a tmdflow without wien2k_rkmax: its values and the hash they made then
    del task["preset_values"]["wien2k_rkmax"]
    task["settings_hash"] = identity.settings_hash("wien2k", task["preset_values"], task["source"])
    with pytest.raises(InputError) as err:
        task.step_request(spec)
    exc = err.value
    assert exc.exit_code == 2 and exc.keys == ["wien2k_rkmax"]
    assert "MoS2-bulk step bands_soc: the preset 'test' pinned when the workflow was submitted gives another " \
           "identity" in exc.problem
    assert "wien2k_rkmax (not in the submitted preset; now 7.0)" in exc.problem and "nothing was run" in exc.problem
    assert "\n" not in exc.problem  # one line: the reason 'tmdflow launch' and 'status' show
    assert "resubmit the workflow" in exc.remedy and "tmdflow rerun" in exc.remedy


def test_a_key_the_code_no_longer_has_stops_the_step_naming_it(tmp_path, inputs):
    _submit(tmp_path)
    task, spec = _stored_task(tmp_path)
    task["preset_values"]["wien2k_old_knob"] = 3  # a key of this code, gone from today's Preset
    task["settings_hash"] = identity.settings_hash("wien2k", task["preset_values"], task["source"])
    with pytest.raises(InputError, match=r"wien2k_old_knob \(submitted 3; no longer a preset key\)") as err:
        task.step_request(spec)
    assert err.value.keys == ["wien2k_old_knob"]


def test_a_changed_definition_of_the_identity_stops_the_step(tmp_path, inputs, monkeypatch):
    _submit(tmp_path)
    task, spec = _stored_task(tmp_path)
    monkeypatch.setattr(identity, "IDENTITY_VERSION", identity.IDENTITY_VERSION + 1)
    with pytest.raises(InputError, match="no preset key differs: the identity's definition did") as err:
        task.step_request(spec)
    assert f"settings hash {task['settings_hash'][:10]} -> " in err.value.problem


def test_pinned_values_this_code_refuses_stop_the_step(tmp_path, inputs):
    _submit(tmp_path)
    task, spec = _stored_task(tmp_path)
    task["preset_values"]["kmesh"] = 0  # e.g. a bound tightened since the submission
    with pytest.raises(InputError, match="the preset 'test' pinned when the workflow was submitted is not valid "
                                         "under this tmdflow: kmesh = 0 is outside") as err:
        task.step_request(spec)
    assert err.value.exit_code == 2 and err.value.keys == ["kmesh"] and "resubmit" in err.value.remedy


def test_a_key_of_another_code_gained_since_submit_changes_nothing(tmp_path, inputs):
    _submit(tmp_path, calc="espresso", steps="scf_soc, bands_soc, analysis")
    task, spec = _stored_task(tmp_path)
    del task["preset_values"]["elk_epsforce"]  # the incident's key: Elk's, not read by pw.x runs
    task["settings_hash"] = identity.settings_hash("espresso", task["preset_values"], task["source"])
    request = task.step_request(spec)
    assert request.settings_digest == task["settings_hash"]  # the same identity: the step runs
    assert request.preset.elk_epsforce == load_preset("test").elk_epsforce  # today's value, for completeness


def test_a_changed_pinned_identity_fails_the_step_before_anything_runs(tmp_path, inputs):
    env, _ = _submit(tmp_path)

    def as_submitted_without_rkmax(params):
        del params["preset_values"]["wien2k_rkmax"]
        params["settings_hash"] = identity.settings_hash("wien2k", params["preset_values"], params["source"])

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

    def old_style(params):
        for key in PINS:
            params.pop(key)

    _edit_stored_tasks(tmp_path, old_style)
    doc = stored_fireworks(tmp_path)["MoS2-bulk-scf_soc"]
    assert not set(PINS) & set(doc["spec"]["_tasks"][0])
    task = _task(doc)
    assert task.step_request(doc["spec"]).preset == before
    _edit_test_preset(inputs)
    assert task.step_request(doc["spec"]).preset.kmesh == 4  # the file as it is now, as before pinning
    _edit_test_preset(inputs, "kmesh: 4", "kmesh: 3")
    run_tmdflow(env, "launch")  # an old-style chain runs as it always did
    assert {d["state"] for d in stored_fireworks(tmp_path).values()} == {"COMPLETED"}


def test_a_convergence_study_is_pinned_and_checked_before_it_runs(inputs):
    spec = WorkflowSpec(name="conv", kind="convergence", preset="test", materials=["MoS2"],
                        convergence={"ladders": {"kmesh": [3, 4]}, "tolerance_mev": 2.0})
    (wf,) = build_workflows(spec)
    task = load_object(wf.fws[0].tasks[0].to_dict())
    assert task["preset_values"] == dataclasses.asdict(load_preset("test"))
    del task["preset_values"]["ecutwfc"]  # as submitted by a tmdflow without the key
    with pytest.raises(InputError, match=r"MoS2 convergence study: .*ecutwfc \(not in the submitted preset"):
        task.run_task({})  # before any pw.x run or store access
