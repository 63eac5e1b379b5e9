"""A pw.x run stopped at max_seconds and resumed: the interrupted run's output is kept beside the
resumed one (``<step>.out.1``, …) and the step's CPU time is that of all its runs.  The fixture
``mos2_test_relax_resumed`` is a real vc-relax (MoS2, test preset) that pw.x stopped at
max_seconds = 60 after one BFGS step and that tmdflow then resumed with restart_mode='restart'."""

import shutil

import pytest

from tmdflow.calculators.espresso.adapter import EspressoCalculator, _set_aside_output, interrupted_outputs
from tmdflow.calculators.espresso.parsers import parse_pw_stdout
from tmdflow.calculators.espresso.profile import EspressoProfile
from tests.helpers import QE67


RESUMED = QE67 / "mos2_test_relax_resumed"


def _no_pw() -> EspressoCalculator:
    return EspressoCalculator(EspressoProfile(pw_command="/nonexistent/pw.x"))  # nothing may run


def test_the_fixture_is_an_interrupted_run_followed_by_its_resumption():
    first, resumed = parse_pw_stdout(RESUMED / "relax.out.1"), parse_pw_stdout(RESUMED / "relax.out")
    assert first.walltime_exceeded and not resumed.walltime_exceeded and resumed.job_done
    assert "restart_mode = 'restart'" in (RESUMED / "relax.in").read_text()
    assert first.cpu_seconds > 0 and resumed.cpu_seconds > 0
    # progress before the stop: the first ionic step's SCF (8 iterations); pw.x stopped as the
    # second SCF began ("stopped in scf loop at iteration # 0", not counted as an iteration)
    assert first.scf_iterations_run == 8 and resumed.scf_iterations_run > 0
    bands = parse_pw_stdout(QE67 / "mos2_quick_soc" / "bands_soc.out")
    assert bands.scf_iterations_run == 0  # a non-SCF run has none


def test_a_resumed_relaxation_costs_the_cpu_time_of_all_its_runs():
    result, _ = _no_pw().finished_relax(RESUMED, "relax")
    (first,) = result.interrupted
    assert first.walltime_exceeded
    resumed_only = parse_pw_stdout(RESUMED / "relax.out").cpu_seconds
    assert result.pw_cpu_seconds == pytest.approx(first.cpu_seconds + resumed_only, abs=1e-9)
    assert result.pw_cpu_seconds > resumed_only
    assert result.pw_cpu_seconds == pytest.approx(29.87 + 174.85, abs=1e-6)  # the two PWSCF clock lines


def test_a_relax_step_resumed_on_a_finished_ladder_rung_counts_its_interrupted_run(tmp_path):
    from ase import Atoms

    from tmdflow.presets import load_preset
    from tmdflow.calculators.espresso.relax_ladder import relax_monolayer

    shutil.copytree(RESUMED, tmp_path / "relax")
    relaxation = relax_monolayer(_no_pw(), Atoms(), load_preset("test", {"relax_stress_zz_thr": 5.0}), tmp_path,
                                 {}, (3, 3, 1), [], restart=True, step="relax")
    (rung,) = relaxation.rungs
    assert rung.reused and relaxation.pw_cpu_seconds == pytest.approx(29.87 + 174.85, abs=1e-6)
    assert rung.interrupted_runs == relaxation.interrupted_runs == 1
    assert rung.as_output()["interrupted_runs"] == 1


def _pw_output(path, marker: str) -> None:
    path.write_text(f"     Program PWSCF v.6.7MaX starts on ...\n{marker}\n")


def test_a_restart_sets_the_interrupted_output_aside_and_a_fresh_run_clears_old_ones(tmp_path):
    _pw_output(tmp_path / "scf_soc.out", "first")
    _set_aside_output(tmp_path, "scf_soc", restart=True)
    assert not (tmp_path / "scf_soc.out").exists() and "first" in (tmp_path / "scf_soc.out.1").read_text()
    _pw_output(tmp_path / "scf_soc.out", "second")
    _set_aside_output(tmp_path, "scf_soc", restart=True)  # a second interruption: the next number
    assert [p.name for p in interrupted_outputs(tmp_path, "scf_soc")] == ["scf_soc.out.1", "scf_soc.out.2"]
    assert "second" in (tmp_path / "scf_soc.out.2").read_text()
    # an output in which pw.x never started (e.g. mpirun could not launch it) is no run to keep
    (tmp_path / "scf_soc.out").write_text("mpirun: command not found\n")
    _set_aside_output(tmp_path, "scf_soc", restart=True)
    assert len(interrupted_outputs(tmp_path, "scf_soc")) == 2
    # another step's outputs are not touched; a fresh run of this step forgets the old runs
    _pw_output(tmp_path / "scf_sr.out.1", "other step")
    _set_aside_output(tmp_path, "scf_soc", restart=False)
    assert interrupted_outputs(tmp_path, "scf_soc") == [] and (tmp_path / "scf_sr.out.1").is_file()
