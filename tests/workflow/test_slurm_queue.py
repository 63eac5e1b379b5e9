"""Queue jobs through a real SLURM (the session's single-node cluster, tests/conftest.py), real
pw.x (test preset, MoS2, one process), the embedded store, driven through the CLI as a user would:

1. ``launch --queue`` with a 1-minute walltime and a 48 s margin: one job (one READY step), named
   after it; its launcher gives pw.x the 12 s left (the SCF needs ~19 s on an idle machine, its first
   iteration ends at ~2 s), pw.x stops cleanly at max_seconds and the step
   waits as a READY detour; the job ends on its own, before SLURM's time limit.
2. ``launch --queue --rapidfire`` with a 10-minute walltime: one job resumes the SCF from its
   checkpoint and runs the bands and the analysis after it (Fireworks one after another, not one
   per job); the submitter stops when no READY work and no job is left.
3. ``table1`` from the store.

The work directory has a space and a ';' in its name: every path in the job script is quoted.
Jobs run one at a time (``dependency: singleton``), as the embedded store needs.  A last test
cancels a running job (``scancel``: SIGTERM to all its processes) and finds its step READY.
"""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import bson.json_util
import pytest

from tmdflow.calculators.espresso.parsers import parse_pw_stdout
from tests.helpers import QE_WORKFLOW_TEMPLATE, ROOT

pytestmark = pytest.mark.qe

WORKFLOW = QE_WORKFLOW_TEMPLATE.format(name="slurm")


def _qadapter(path: Path, walltime: str, margin: int) -> Path:
    path.write_text(f"""\
q_type: SLURM
template: SLURM_template.txt
params:
  job_name: tmdflow
  nodes: 1
  ntasks_per_node: 1
  walltime: "{walltime}"
  queue: test
  dependency: singleton
walltime_margin_seconds: {margin}
tmdflow_command: {json.dumps(shlex.join([sys.executable, "-m", "tmdflow.cli"]))}
""")
    return path


def _states(store: Path) -> dict[str, str]:
    data = bson.json_util.loads(store.read_text())
    return {doc["name"]: doc["state"] for _, doc in data["tmdflow"]["fireworks"]["documents"]}


def _squeue(env) -> str:
    return subprocess.run(["squeue", "-h", "-o", "%i %j %T"], env=env, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def batch(slurm_cluster, tmp_path_factory, pseudo_dir):
    d = tmp_path_factory.mktemp("slurm") / "work dir; with space"
    d.mkdir()
    store = d / "store.json"
    env = {**slurm_cluster.env, "TMDFLOW_DB_URI": f"embedded:{store}", "TMDFLOW_WORK_DIR": str(d / "runs"),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": "1", "TMDFLOW_DB_LOCK_TIMEOUT": "300",
           "PYTHONPATH": str(ROOT)}

    def tmdflow(*args, timeout=900):
        proc = subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, f"tmdflow {' '.join(args)} ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc

    (d / "wf.yaml").write_text(WORKFLOW)
    tmdflow("submit", str(d / "wf.yaml"))
    out = {"dir": d, "env": env, "store": store, "tmdflow": tmdflow}

    start = time.monotonic()
    short = tmdflow("launch", "--queue", "--qadapter", str(_qadapter(d / "short.yaml", "00:01:00", 48)), "--njobs", "3")
    out["short"] = short
    out["queued_short"] = _squeue(env)
    deadline = time.monotonic() + 120
    while _squeue(env):
        assert time.monotonic() < deadline, f"the short job did not end: {_squeue(env)}"
        time.sleep(1)
    out["short_seconds"] = time.monotonic() - start
    out["after_short"] = _states(store)

    start = time.monotonic()
    out["rapid"] = tmdflow("launch", "--queue", "--qadapter", str(_qadapter(d / "long.yaml", "00:10:00", 60)),
                           "--rapidfire", "--sleep", "2", "--njobs", "2")
    out["rapid_seconds"] = time.monotonic() - start
    out["final"] = _states(store)
    print(f"\nSLURM e2e: short job {out['short_seconds']:.0f} s, rapidfire {out['rapid_seconds']:.0f} s")
    return out


def test_one_job_for_one_ready_step_named_after_it_in_a_quoted_directory(batch):
    assert "Warning" not in batch["short"].stderr and "Traceback" not in batch["short"].stderr
    lines = batch["short"].stdout.strip().splitlines()
    assert lines[-1].startswith("submitted 1 job(s): ")  # one READY step: one job, not --njobs 3
    assert "tmdflow-MoS2-monolayer-scf_soc" in batch["queued_short"]
    (err,) = (batch["dir"] / "runs" / "queue").glob("launcher_*/tmdflow-MoS2-monolayer-scf_soc-*.error")
    script = err.parent / "tmdflow-job.sh"  # the SLURM job wrote its output beside its script
    assert f"cd {shlex.quote(str(script.parent))}" in script.read_text()
    assert "launched 1 Firework(s)" in err.read_text()


def test_a_job_too_short_for_its_step_stops_it_cleanly_at_max_seconds(batch):
    states = batch["after_short"]
    assert states["MoS2-monolayer-scf_soc"] == "COMPLETED"
    (detour,) = [name for name in states if name.endswith("scf_soc-restart")]
    assert states[detour] == "READY"  # resumed by the next job
    assert states["MoS2-monolayer-bands_soc"] == "WAITING"
    assert batch["short_seconds"] < 60 + 20  # ended on its own, not killed at the 1-minute limit
    first = next((batch["dir"] / "runs").glob("**/scf_soc.out.1"))  # set aside by the resumed run
    assert parse_pw_stdout(first).walltime_exceeded


def test_a_later_job_resumes_it_and_runs_the_steps_after_it(batch):
    assert set(batch["final"].values()) == {"COMPLETED"}
    lines = batch["rapid"].stderr
    assert lines.count("submitted job ") == 1  # the one job ran the three READY-in-turn Fireworks
    assert "scf_soc-restart)" in lines  # the job's name says what it starts with
    assert "no READY Fireworks and no job of this submission left" in lines
    assert _squeue(batch["env"]) == ""
    data = bson.json_util.loads(batch["store"].read_text())["tmdflow"]
    (task,) = [doc for _, doc in data["tasks"]["documents"] if doc["step"] == "scf_soc"]
    assert task["outputs"]["converged"] is True and task["outputs"]["pw_runs_interrupted"] == 1


def test_table1_from_the_store_after_the_batch(batch):
    table = batch["tmdflow"]("table1").stdout
    assert "| MoS2 |" in table
    rows = json.loads(batch["tmdflow"]("query", "--formula", "MoS2", "--json").stdout)
    assert rows[0]["splitting.delta_vb_k_mev"] == pytest.approx(148, abs=10)
    nothing = batch["tmdflow"]("launch", "--queue", "--qadapter", str(batch["dir"] / "long.yaml"))
    assert "nothing submitted" in nothing.stderr and nothing.stdout.strip() == "submitted 0 job(s):"


def test_scancel_stops_the_job_cleanly_and_leaves_its_step_ready(slurm_cluster, tmp_path, pseudo_dir):
    """SLURM's scancel (like its time limit) sends SIGTERM to every process of the job: the
    launcher stops pw.x, leaves the step READY with the interruption recorded, exits 143."""
    from tmdflow import processes

    store = tmp_path / "store.json"
    env = {**slurm_cluster.env, "TMDFLOW_DB_URI": f"embedded:{store}", "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": "1", "PYTHONPATH": str(ROOT)}
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("name: slurm", "name: scancel"))
    cli = [sys.executable, "-m", "tmdflow.cli"]
    subprocess.run([*cli, "submit", str(tmp_path / "wf.yaml")], env=env, check=True, capture_output=True)
    sub = subprocess.run([*cli, "launch", "--queue", "--qadapter", str(_qadapter(tmp_path / "q.yaml", "00:10:00", 60))],
                         env=env, capture_output=True, text=True, check=True)
    job = sub.stdout.split()[-1]
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").glob(f"**/{processes.PID_FILE}")):
        assert time.monotonic() < deadline, f"pw.x did not start in the job: {_squeue(env)}"
        time.sleep(0.5)
    (pid_file,) = (tmp_path / "runs").glob(f"**/{processes.PID_FILE}")
    pids = json.loads(pid_file.read_text())["pids"]
    subprocess.run(["scancel", job], env=env, check=True)
    while _squeue(env):
        assert time.monotonic() < deadline + 60, f"the cancelled job did not end: {_squeue(env)}"
        time.sleep(0.5)
    assert not [p for p in pids if processes._alive(p)]
    data = bson.json_util.loads(store.read_text())["tmdflow"]
    fw = next(doc for _, doc in data["fireworks"]["documents"] if doc["name"].endswith("scf_soc"))
    assert fw["state"] == "READY" and fw["spec"]["_tmdflow_interruptions"][0]["signal"] == "SIGTERM"
    (err,) = (tmp_path / "runs" / "queue").glob(f"launcher_*/*-{job}.error")
    assert "interrupted by SIGTERM" in err.read_text()


def test_rapidfire_stops_when_its_jobs_end_without_running_anything(slurm_cluster, tmp_path):
    """A job that cannot run tmdflow (here: its command is `true`) must not be resubmitted forever."""
    env = {**slurm_cluster.env, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}",
           "TMDFLOW_WORK_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(ROOT)}
    (tmp_path / "wf.yaml").write_text(WORKFLOW.replace("name: slurm", "name: idle"))
    cli = [sys.executable, "-m", "tmdflow.cli"]
    subprocess.run([*cli, "submit", str(tmp_path / "wf.yaml")], env=env, check=True, capture_output=True)
    q = _qadapter(tmp_path / "q.yaml", "00:05:00", 60)
    q.write_text(q.read_text().replace(f"tmdflow_command: {json.dumps(shlex.join([sys.executable, '-m', 'tmdflow.cli']))}",
                                       "tmdflow_command: 'true'"))
    out = subprocess.run([*cli, "launch", "--queue", "--qadapter", str(q), "--rapidfire", "--sleep", "1"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 72, out.stderr
    assert "3 queue jobs ended without running a Firework" in out.stderr and out.stderr.count("submitted job ") == 3
