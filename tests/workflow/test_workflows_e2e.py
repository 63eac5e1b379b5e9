"""Workflows on the embedded store with real pw.x runs (test preset), driven through the CLI in
separate processes as a user would:

submit -> launch (killed with SIGKILL after the first completed step; a second launcher meanwhile
is refused) -> launch --recover -> status / query / table1 -> backup -> damage -> restore.

The first launcher's pw.x is a wrapper that holds the bands run (the second step) until the test
has killed that launcher, so "a second launcher while the first runs" and "killed mid-workflow" hold on a
fast machine too: without it the test preset's bands step and the analysis could finish before
the second launcher started (seen once in a clean-clone CI run: rc 0, "launched 0").

The workflow's SCF is made to fail (electron_maxstep 5 at mixing_beta 0.4) and must be corrected
automatically (mixing_beta 0.2, more steps), with the correction recorded in the task document.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bson.json_util
import pytest
from tests.helpers import ROOT

pytestmark = pytest.mark.qe

WORKFLOW = """\
name: e2e
preset: test
overrides: {electron_maxstep: 5}
materials: [MoS2]
structures: [monolayer]
steps: [scf_soc, bands_soc, analysis]
"""


def _tmdflow(args, env, check=True, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"tmdflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _fw_states(store: Path) -> dict[str, str]:
    try:
        data = bson.json_util.loads(store.read_text())
    except (ValueError, FileNotFoundError):
        return {}
    fws = data.get("tmdflow", {}).get("fireworks", {}).get("documents", [])
    return {doc["name"]: doc["state"] for _, doc in fws}


def _gated_pw(d: Path, held: Path) -> Path:
    """pw.x, except that a bands run waits (at most 10 min) in the wrapper, its pid in ``held``."""
    script = d / "gated-pw.sh"
    script.write_text(f"""#!/bin/sh
prev=""
for arg in "$@"; do [ "$prev" = "-in" ] && input="$arg"; prev="$arg"; done
if [ -n "$input" ] && grep -Eqi "calculation *= *.bands" "$input"; then
  echo $$ > "{held}/$$"
  n=0
  while [ $n -lt 600 ]; do sleep 1; n=$((n + 1)); done
  exit 1
fi
exec pw.x "$@"
""")
    script.chmod(0o755)
    return script


def _stop_held(held: Path) -> None:
    for pid_file in held.iterdir():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, pseudo_dir):
    d = tmp_path_factory.mktemp("e2e")
    (d / "wf.yaml").write_text(WORKFLOW)
    store = d / "store.json"
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{store}", "TMDFLOW_WORK_DIR": str(d / "runs"),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": str(min(2, os.cpu_count() or 1)),
           "PYTHONPATH": str(ROOT)}
    out = _tmdflow(["submit", str(d / "wf.yaml")], env)
    assert "added" in out.stdout
    again = _tmdflow(["submit", str(d / "wf.yaml")], env)
    assert "already submitted" in again.stdout  # duplicates refused without --force

    held = d / "held"
    held.mkdir()
    gated = _gated_pw(d, held)
    launcher = subprocess.Popen([sys.executable, "-m", "tmdflow.cli", "launch"],
                                env={**env, "TMDFLOW_PW_COMMAND": str(gated)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 400
    while _fw_states(store).get("MoS2-monolayer-scf_soc") != "COMPLETED" or not any(held.iterdir()):
        assert launcher.poll() is None, launcher.stdout.read().decode()
        assert time.monotonic() < deadline, "scf_soc did not complete (or bands_soc did not start) in time"
        time.sleep(1)
    busy = _tmdflow(["launch"], {**env, "TMDFLOW_DB_LOCK_TIMEOUT": "1"}, check=False)
    launcher.send_signal(signal.SIGKILL)  # mid-workflow: bands_soc is held in its pw.x
    launcher.wait()
    states_after_kill = _fw_states(store)
    _stop_held(held)  # mpirun has its parent-death signal; a held rank that outlived it is stopped here
    recovered = _tmdflow(["launch", "--recover"], env)
    return {"dir": d, "env": env, "store": store, "busy": busy, "after_kill": states_after_kill,
            "recovered": recovered}


def test_a_second_launcher_is_refused_clearly(e2e):
    assert e2e["busy"].returncode == 62
    assert "in use by pid" in e2e["busy"].stderr


def test_kill_minus_9_loses_only_the_running_step(e2e):
    assert e2e["after_kill"]["MoS2-monolayer-scf_soc"] == "COMPLETED"  # durable before the kill
    assert e2e["after_kill"]["MoS2-monolayer-analysis"] != "COMPLETED"
    data = bson.json_util.loads(e2e["store"].read_text())["tmdflow"]
    states = {doc["name"]: doc["state"] for _, doc in data["fireworks"]["documents"]}
    assert set(states.values()) == {"COMPLETED"}
    fw_id = next(doc["fw_id"] for _, doc in data["fireworks"]["documents"] if doc["name"].endswith("scf_soc"))
    runs = [doc for _, doc in data["launches"]["documents"] if doc["fw_id"] == fw_id]
    assert len(runs) == 1  # the completed SCF was not run again


def test_unconverged_scf_was_corrected_and_recorded(e2e):
    q = _tmdflow(["query", "--formula", "MoS2", "--json"], e2e["env"])
    assert json.loads(q.stdout)
    data = bson.json_util.loads(e2e["store"].read_text())["tmdflow"]
    task = next(doc for _, doc in data["tasks"]["documents"] if doc["task_id"].endswith("scf_soc"))
    assert task["outputs"]["converged"] is True
    assert task["corrections"][0]["handler"] == "scf_not_converged"
    assert task["corrections"][0]["changes"]["mixing_beta"] == 0.2
    assert len(task["pseudopotentials"]["Mo"]["sha256"]) == 64 and task["code_version"].startswith("6.")
    assert task["outputs"]["unconverged_eigenvalues"] is None  # not reported for an SCF
    bands = next(doc for _, doc in data["tasks"]["documents"] if doc["task_id"].endswith("bands_soc"))
    assert isinstance(bands["outputs"]["unconverged_eigenvalues"], int)
    # pw.x's own clock (first MPI process), next to the step's wall time
    assert 0 < task["outputs"]["pw_cpu_seconds"] <= 1.5 * task["wall_seconds"]


def test_query_and_table1_from_the_store(e2e):
    rows = json.loads(_tmdflow(["query", "--formula", "MoS2", "--dim", "monolayer", "--json"], e2e["env"]).stdout)
    assert len(rows) == 1
    assert rows[0]["splitting.delta_vb_k_mev"] == pytest.approx(148, abs=10)
    table = _tmdflow(["table1"], e2e["env"]).stdout
    assert "| MoS2 |" in table and "| 148 |" in table
    status = _tmdflow(["status"], e2e["env"]).stdout
    assert "[COMPLETED]" in status


def test_damaged_store_is_reported_and_restored_from_backup(e2e):
    backup = e2e["dir"] / "backup.json"
    _tmdflow(["db", "backup", str(backup)], e2e["env"])
    e2e["store"].write_text(e2e["store"].read_text()[:500])  # truncated, as by a crash mid-write
    broken = _tmdflow(["db", "info"], e2e["env"], check=False)
    assert broken.returncode == 61 and "damaged" in broken.stderr and "db restore" in broken.stderr
    _tmdflow(["db", "restore", str(backup)], e2e["env"])
    rows = json.loads(_tmdflow(["query", "--json"], e2e["env"]).stdout)
    assert rows and rows[0]["formula"] == "MoS2"
    assert (e2e["store"].parent / "store.json.damaged").exists()  # kept for inspection


def test_a_failed_step_fizzles_with_its_reason_in_status(tmp_path, pseudo_dir):
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("name: e2e", "name: broken"))
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}", "TMDFLOW_WORK_DIR": str(tmp_path),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "PYTHONPATH": str(ROOT),
           "TMDFLOW_PW_COMMAND": "pw-not-installed.x"}
    _tmdflow(["submit", str(tmp_path / "wf.yaml")], env)
    launched = _tmdflow(["launch"], env, check=False)
    assert launched.returncode == 70 and "tmdflow status" in launched.stderr  # a queue job must not report success
    status = _tmdflow(["status"], env).stdout
    assert "FIZZLED" in status and "pw-not-installed.x" in status  # the reason, not just the state
    data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
    failed = [doc for _, doc in data["tasks"]["documents"] if doc["state"] == "failed"]
    assert failed and "not found on PATH" in failed[0]["error"]


def test_run_command_prints_from_the_store_without_recomputing(e2e):
    """What `make run` calls: on a completed workflow it submits nothing, runs nothing, prints."""
    out = _tmdflow(["run", str(e2e["dir"] / "wf.yaml")], e2e["env"])
    assert "launched 0 Firework(s)" in out.stderr
    assert "MoS2" in out.stdout and "148" in out.stdout


def test_a_step_stopped_at_max_seconds_is_resumed_as_a_detour_before_its_children(tmp_path, pseudo_dir):
    """What a queue job does near its walltime (`launch --max-launches 1 --max-seconds ...`): pw.x
    stops cleanly, the step is resumed from its checkpoint by a detour Firework, and the steps
    after it wait for the detour."""
    from tmdflow.calculators.espresso.parsers import parse_pw_stdout

    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("name: e2e", "name: walltime").replace(
        "overrides: {electron_maxstep: 5}\n", ""))
    store = tmp_path / "store.json"
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{store}", "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": str(min(2, os.cpu_count() or 1)),
           "PYTHONPATH": str(ROOT)}
    _tmdflow(["submit", str(tmp_path / "wf.yaml")], env)
    _tmdflow(["launch", "--max-launches", "1", "--max-seconds", "6"], env)  # the SCF takes ~20 s
    states = _fw_states(store)
    (scf,) = [name for name in states if name.endswith("scf_soc")]
    (detour,) = [name for name in states if name.endswith("-restart")]
    assert states[scf] == "COMPLETED" and states[detour] == "READY"
    assert {states[n] for n in states if n.endswith(("bands_soc", "analysis"))} == {"WAITING"}
    (interrupted,) = (tmp_path / "runs").glob("**/scf_soc.out")
    assert parse_pw_stdout(interrupted).walltime_exceeded
    data = bson.json_util.loads(store.read_text())["tmdflow"]
    assert not [doc for _, doc in data["tasks"]["documents"] if doc["step"] == "scf_soc"]  # nothing stored yet

    _tmdflow(["launch"], env)  # no max_seconds: the detour, then the children
    assert set(_fw_states(store).values()) == {"COMPLETED"}
    data = bson.json_util.loads(store.read_text())["tmdflow"]
    (task,) = [doc for _, doc in data["tasks"]["documents"] if doc["step"] == "scf_soc"]
    assert task["outputs"]["converged"] is True and "restart_mode = 'restart'" in task["inputs"]["pw_input"]
    assert task["outputs"]["pw_runs_interrupted"] == 1
    first = parse_pw_stdout(interrupted.parent / "scf_soc.out.1")  # the interrupted run, set aside
    last = parse_pw_stdout(interrupted)
    assert first.walltime_exceeded and last.job_done and not last.walltime_exceeded
    assert task["outputs"]["pw_cpu_seconds"] == pytest.approx(first.cpu_seconds + last.cpu_seconds)
    rows = json.loads(_tmdflow(["query", "--formula", "MoS2", "--json"], env).stdout)
    assert rows[0]["splitting.delta_vb_k_mev"] == pytest.approx(148, abs=10)  # the resumed SCF's answer
