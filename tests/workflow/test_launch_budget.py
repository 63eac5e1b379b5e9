"""A launcher's time budget (``tmdflow launch --max-seconds``, a queue job's walltime minus its
margin) reaches every program it runs: each pw.x run gets the time left as its max_seconds (relax
rungs, phonon displacements, convergence points, bands runs: every run of every step, not the
step's start value), and bands.x/projwfc.x, which have no max_seconds, are stopped at its end
and their step resumed by the next launch."""

import time

import pytest

from tmdflow import processes
from tmdflow.calculators.espresso.adapter import _stopped_at_deadline
from tmdflow.calculators.espresso.profile import RunRecord
from tmdflow.errors import MaxSecondsTooShort, WalltimeReached
from tmdflow.presets import load_preset
from tmdflow.steps import StepRequest, run_step
from tests.helpers import QE_WORKFLOW_TEMPLATE, ROOT


@pytest.fixture
def budget():
    yield processes.set_budget
    processes.set_budget(None)


def test_a_program_without_max_seconds_is_stopped_at_the_deadline(tmp_path, budget):
    budget(2.0)
    start = time.monotonic()
    code, wall = processes.run_program(["sleep", "60"], tmp_path, tmp_path / "sleep.out", deadline=processes.deadline())
    assert code == -15 and 1.5 < wall < 10 and time.monotonic() - start < 10
    assert not (tmp_path / processes.PID_FILE).exists()
    # what the adapter makes of such a stop: a resumable step, not a failure
    with pytest.raises(WalltimeReached, match="bands.x stopped .* --max-seconds"):
        _stopped_at_deadline(RunRecord("bands.x", ("bands.x",), tmp_path, code, wall), tmp_path)


@pytest.mark.qe
def test_pw_x_gets_the_time_left_even_when_its_step_asked_for_none(qe_settings, budget):
    # a budget of 0.6 s and no max_seconds in the request: pw.x (~2 s to start) stops before its
    # first iteration having had the whole budget -- which no later launch would change
    budget(0.6)
    req = StepRequest("t", "MoS2", "monolayer", load_preset("test"), "scf_soc")
    with pytest.raises(MaxSecondsTooShort):
        run_step(req, qe_settings, qe_settings.work_dir)
    (inp,) = qe_settings.work_dir.glob("**/scf_soc.in")
    value = float(next(line for line in inp.read_text().splitlines() if "max_seconds" in line).split("=")[1])
    assert 0 < value <= 0.6


@pytest.mark.qe
def test_a_run_left_with_a_sliver_of_the_budget_is_resumed_not_failed(qe_settings, budget):
    # 0.5 s left of a 100 s budget (earlier runs of the launcher used the rest): stopping before
    # the first iteration says nothing about the budget, so the step waits for the next launch
    budget(100.0)
    req = StepRequest("t", "MoS2", "monolayer", load_preset("test"), "scf_soc", max_seconds=0.5)
    with pytest.raises(WalltimeReached, match="time left"):
        run_step(req, qe_settings, qe_settings.work_dir)


@pytest.mark.qe
def test_launch_with_a_budget_too_short_to_start_pw_x_exits_34(tmp_path, pseudo_dir):
    import os
    import subprocess
    import sys

    (tmp_path / "wf.yaml").write_text(QE_WORKFLOW_TEMPLATE.format(name="ms"))
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}", "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": "1", "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "tmdflow.cli"]
    subprocess.run([*cli, "submit", str(tmp_path / "wf.yaml")], env=env, check=True, capture_output=True)
    out = subprocess.run([*cli, "launch", "--max-seconds", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 34, out.stderr
    assert "max_seconds" in out.stderr and "--max-seconds" in out.stderr and "Traceback" not in out.stderr
