"""Queue job scripts and the launcher's exit codes and output streams, without a batch system
(the SLURM end-to-end tests are tests/test_slurm_queue.py).  Cheap steps come from the fake WIEN2k
installation (tests/fake_wien2k, a test double)."""

import os
import subprocess
import sys
from pathlib import Path

import bson.json_util
import pytest

from tmdflow.errors import InputError
from tmdflow.queue import job_name, job_script, load_queue_config
from tests.helpers import FAKE_WIEN2K, ROOT

ROOT = ROOT
FAKE = FAKE_WIEN2K


def test_every_path_in_the_job_script_is_shell_quoted(tmp_path):
    nasty = tmp_path / "work dir; touch INJECTED" / "queue"
    q = tmp_path / "q.yaml"
    q.write_text("q_type: SLURM\ntemplate: SLURM_template.txt\nparams: {walltime: '01:00:00', queue: test}\n"
                 f"tmdflow_command: \"'{tmp_path / 'venv dir' / 'bin' / 'tmdflow'}'\"\nwalltime_margin_seconds: 300\n")
    script = job_script(q, nasty)
    assert "cd '" + str(nasty) + "'" in script
    assert f"'{tmp_path / 'venv dir' / 'bin' / 'tmdflow'}' launch --max-seconds 3300" in script
    assert "$$" not in script and "--account" not in script  # unset template keys are dropped
    # the shell runs it as intended: cd into the odd directory, nothing injected
    nasty.mkdir(parents=True)
    body = script.replace(str(tmp_path / "venv dir" / "bin" / "tmdflow"), "/bin/echo")
    run = subprocess.run(["bash", "-c", body], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "launch --max-seconds 3300"
    assert not list(tmp_path.rglob("INJECTED"))


def test_job_script_has_no_database_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("TMDFLOW_DB_URI", "mongodb://tmdflow_user:s3cret@db.example.org/")
    script = job_script(None, tmp_path)
    assert "s3cret" not in script and "mongodb" not in script


def test_queue_yaml_errors_name_the_key(tmp_path):
    q = tmp_path / "q.yaml"
    q.write_text("q_type: SLURM\ntemplate: SLURM_template.txt\nparams: {walltime: '00:05:00'}\nwaltime_margin: 5\n")
    with pytest.raises(InputError, match="unknown key.*waltime_margin"):
        load_queue_config(q)
    q.write_text("q_type: SLURM\ntemplate: SLURM_template.txt\nparams: {walltime: '00:05:00'}\n")
    with pytest.raises(InputError, match="not longer than walltime_margin_seconds"):
        job_script(q, tmp_path)  # 300 s walltime, default margin 600 s
    assert job_name("tmdflow", "MoS2-monolayer-scf_soc") == "tmdflow-MoS2-monolayer-scf_soc"
    assert job_name("my job", "a;b") == "my_job-a_b"


def test_per_job_limit_and_walltime_formats(tmp_path):
    q = tmp_path / "q.yaml"
    q.write_text("q_type: SLURM\ntemplate: SLURM_template.txt\nparams: {walltime: '1-00:00:00'}\n"
                 "max_launches_per_job: 2\nwalltime_margin_seconds: 600\n")
    assert "tmdflow launch --max-seconds 85800 --max-launches 2" in job_script(q, tmp_path)


def _env(tmp_path):
    return {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}", "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
            "TMDFLOW_NPROCS": "1", "WIENROOT": str(FAKE), "PYTHONPATH": str(ROOT)}


def _tmdflow(env, *args):
    return subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_fizzled_step_makes_launch_exit_70_and_stdout_stays_clean(tmp_path):
    (tmp_path / "wf.yaml").write_text(
        "name: fz\ncalculator: wien2k\npreset: test\nmaterials: [MoS2]\nstructures: [bulk]\nsteps: [scf_sr, scf_soc, bands_soc, analysis]\n")
    env = {**_env(tmp_path), "WIENROOT": str(tmp_path / "no-wien2k")}
    assert _tmdflow(env, "submit", str(tmp_path / "wf.yaml")).returncode == 0
    out = _tmdflow(env, "launch")
    assert out.returncode == 70, out.stderr
    assert "1 step(s) failed" in out.stderr and "tmdflow status" in out.stderr
    assert "Traceback" not in out.stderr  # the traceback is in the launch directory's FW_error.log
    assert out.stdout == ""  # FireWorks' log lines are not on stdout
    (log,) = (tmp_path / "runs" / "launches").glob("*/*/FW_error.log")
    assert "Traceback" in log.read_text()


def test_the_worker_env_stored_in_launches_holds_no_database_uri(tmp_path):
    (tmp_path / "wf.yaml").write_text(
        "name: env\ncalculator: wien2k\npreset: test\nmaterials: [MoS2]\nstructures: [bulk]\nsteps: [scf_sr, scf_soc, bands_soc, analysis]\n")
    env = _env(tmp_path)
    assert _tmdflow(env, "submit", str(tmp_path / "wf.yaml")).returncode == 0
    out = _tmdflow(env, "launch")
    assert out.returncode == 0, out.stderr
    data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
    launches = [doc for _, doc in data["launches"]["documents"]]
    assert [doc["state"] for doc in launches] == ["COMPLETED"] * 4
    for launch in launches:
        worker_env = launch["fworker"]["env"]["tmdflow"]
        assert "db_uri" not in worker_env and "db_name" not in worker_env
        assert str(tmp_path / "store.json") not in bson.json_util.dumps(launch)
        assert worker_env["launcher_pid"] and worker_env["launcher_host"]


def test_run_prints_only_the_table_on_stdout_with_a_relative_work_dir(tmp_path):
    """`tmdflow run wf.yaml 2>/dev/null` shows the table and nothing of FireWorks' logging; a
    relative work_dir (the default is tmdflow-runs) means the same directory for every step."""
    (tmp_path / "wf.yaml").write_text(
        "name: out\ncalculator: wien2k\npreset: test\nmaterials: [MoS2]\nstructures: [bulk]\n"
        "steps: [scf_sr, scf_soc, bands_soc, analysis]\n")
    env = {**_env(tmp_path), "TMDFLOW_WORK_DIR": "relative-runs"}
    out = subprocess.run([sys.executable, "-m", "tmdflow.cli", "run", "wf.yaml"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "workflow 'out', preset 'test'" and any(line.startswith("MoS2 (bulk)") for line in lines)
    assert not [line for line in lines if " INFO " in line or "fw_id" in line]
    assert " INFO " not in out.stderr  # the Rocket's INFO lines repeat the progress lines
    assert (tmp_path / "relative-runs").is_dir() and not list((tmp_path / "relative-runs" / "launches").rglob("relative-runs"))


def test_a_machine_without_the_batch_system_gets_a_clear_error(tmp_path):
    (tmp_path / "wf.yaml").write_text(
        "name: nq\ncalculator: wien2k\npreset: test\nmaterials: [MoS2]\nstructures: [bulk]\n"
        "steps: [scf_sr, scf_soc, bands_soc, analysis]\n")
    env = {**_env(tmp_path), "PATH": str(Path(sys.executable).parent)}  # no sbatch there
    assert _tmdflow(env, "submit", str(tmp_path / "wf.yaml")).returncode == 0
    out = _tmdflow(env, "launch", "--queue")
    assert out.returncode == 72 and "'sbatch' not found" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "runs" / "queue").is_dir()  # the launch directory is created, not required
