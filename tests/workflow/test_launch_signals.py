"""Launchers that stop cleanly: Ctrl-C / SIGTERM stop the running programs (mpirun and its ranks),
leave the step READY with the interruption recorded and exit 130/143; after SIGKILL no pw.x
outlives the launcher (parent-death signal); a relaunch checks the run directory's pid file; a
RUNNING step whose launcher on this host is gone is recovered at once.

pw.x runs are real (test preset, 2 MPI ranks); the recovery test uses the fake WIEN2k
installation (tests/fake_wien2k, a test double) for cheap steps."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import bson.json_util
import pytest

from tmdflow import processes
from tmdflow.errors import RunInProgress
from tests.helpers import FAKE_WIEN2K, QE_WORKFLOW_TEMPLATE, ROOT

ROOT = ROOT
FAKE = FAKE_WIEN2K
NPROCS = min(2, os.cpu_count() or 1)
WORKFLOW = QE_WORKFLOW_TEMPLATE.format(name="sig")


def _store(path: Path) -> dict:
    return bson.json_util.loads(path.read_text())["tmdflow"]


def _program_pids(work: Path, timeout: float = 120) -> list[int]:
    """The pids of the running pw.x (mpirun and its ranks) from the run directory's pid file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid_file in work.glob(f"**/{processes.PID_FILE}"):
            info = json.loads(pid_file.read_text())
            if len(info["pids"]) >= (3 if NPROCS > 1 else 1):  # mpirun + its ranks (refreshed every 3 s)
                return [int(p) for p in info["pids"]]
        time.sleep(0.5)
    raise AssertionError("pw.x did not start in time")


def _all_dead(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if processes._alive(p)]:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def env(tmp_path, pseudo_dir):
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    e = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}", "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
         "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": str(NPROCS), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "tmdflow.cli", "submit", str(tmp_path / "wf.yaml")], env=e, check=True,
                   capture_output=True)
    return e


@pytest.mark.qe
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_launcher_stops_pw_x_and_leaves_the_step_ready(tmp_path, env, sig):
    # its own session, as a shell runs a command: Ctrl-C is SIGINT to the whole foreground group
    launcher = subprocess.Popen([sys.executable, "-m", "tmdflow.cli", "launch"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    pids = _program_pids(tmp_path / "runs")
    os.killpg(launcher.pid, sig)
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + sig, err
    assert _all_dead(pids, 5), "pw.x outlived its launcher"
    assert f"interrupted by {signal.Signals(sig).name}" in err and "Traceback" not in err and out == ""
    data = _store(tmp_path / "store.json")
    fw = next(doc for _, doc in data["fireworks"]["documents"] if doc["name"].endswith("scf_soc"))
    assert fw["state"] == "READY"  # not FIZZLED
    assert fw["spec"]["_tmdflow_interruptions"][0]["signal"] == signal.Signals(sig).name
    assert not [doc for _, doc in data["tasks"]["documents"] if doc["state"] == "failed"]
    status = subprocess.run([sys.executable, "-m", "tmdflow.cli", "status"], env=env, capture_output=True, text=True)
    assert f"READY  -- interrupted by {signal.Signals(sig).name}" in status.stdout
    assert not list((tmp_path / "runs").glob(f"**/{processes.PID_FILE}"))  # removed with the run


@pytest.mark.qe
def test_no_pw_x_outlives_a_launcher_killed_with_sigkill(tmp_path, env):
    launcher = subprocess.Popen([sys.executable, "-m", "tmdflow.cli", "launch"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    pids = _program_pids(tmp_path / "runs")
    launcher.kill()
    launcher.wait()
    assert _all_dead(pids, 15), "mpirun or a pw.x rank survived the SIGKILL of its launcher"


def test_a_relaunch_stops_an_orphan_run_and_refuses_a_live_one(tmp_path):
    orphan = subprocess.Popen(["sleep", "300"], start_new_session=True)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a launcher pid that no longer exists
    pid_file = tmp_path / processes.PID_FILE
    info = {"host": socket.gethostname(), "launcher_pid": gone.pid, "program": "pw.x", "pids": [orphan.pid]}
    pid_file.write_text(json.dumps(info))
    try:
        processes.check_directory(tmp_path)
        assert orphan.wait(timeout=15) is not None and not pid_file.exists()
    finally:
        orphan.kill()
    live = subprocess.Popen(["sleep", "300"])
    try:
        pid_file.write_text(json.dumps({**info, "launcher_pid": live.pid, "pids": [live.pid]}))
        with pytest.raises(RunInProgress, match=f"launcher pid {live.pid}") as err:
            processes.check_directory(tmp_path)
        assert err.value.exit_code == 71 and processes._alive(live.pid)
    finally:
        live.kill()
    # another host's run (shared file system): live while its launcher touches the file, then stale
    pid_file.write_text(json.dumps({**info, "host": "node-elsewhere", "pids": [12345]}))
    with pytest.raises(RunInProgress, match="node-elsewhere"):
        processes.check_directory(tmp_path)
    old = time.time() - processes.STALE_SECONDS - 1
    os.utime(pid_file, (old, old))
    processes.check_directory(tmp_path)
    assert not pid_file.exists()


def test_a_running_step_whose_launcher_is_gone_is_flagged_and_recovered_at_once(tmp_path):
    (tmp_path / "wf.yaml").write_text("name: lost\ncalculator: wien2k\npreset: test\nmaterials: [MoS2]\n"
                                      "structures: [bulk]\nsteps: [scf_sr, scf_soc, bands_soc, analysis]\n")
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}", "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
           "TMDFLOW_NPROCS": "1", "WIENROOT": str(FAKE), "PYTHONPATH": str(ROOT)}

    def tmdflow(*args):
        return subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True)

    assert tmdflow("submit", str(tmp_path / "wf.yaml")).returncode == 0
    # a launcher that checked out the first step (RUNNING in the store) and died
    gone = subprocess.Popen(["true"])
    gone.wait()
    code = ("import sys; from tmdflow.settings import load_settings; from tmdflow.store.connection import connect\n"
            "from tmdflow.fireworks import worker\n"
            "conn = connect(load_settings())\n"
            "w = worker(load_settings()); w.env['tmdflow']['launcher_pid'] = int(sys.argv[1])\n"
            "fw, launch_id = conn.launchpad.checkout_fw(w, '.')\n"
            "conn.checkpoint(); print(fw.fw_id)\n")
    checked_out = subprocess.run([sys.executable, "-c", code, str(gone.pid)], env=env, capture_output=True, text=True,
                                 cwd=tmp_path)
    assert checked_out.returncode == 0, checked_out.stderr
    fw_id = int(checked_out.stdout.split()[-1])
    status = tmdflow("status")
    assert f"RUNNING  -- suspected lost: its launcher (pid {gone.pid}" in status.stdout
    out = tmdflow("launch", "--recover")  # default --expiration 3600 s: found by its pid, not its pings
    assert out.returncode == 0, out.stderr
    assert f"marked lost runs for rerun: fw_ids [{fw_id}]" in out.stderr
    data = _store(tmp_path / "store.json")
    assert {doc["state"] for _, doc in data["fireworks"]["documents"]} == {"COMPLETED"}
