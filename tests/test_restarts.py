"""Restart handlers (tmdflow.restarts) on real failures: the QE adapter classifies real pw.x 6.7
outputs (tests/fixtures/qe-6.7, one folder per failure) replayed in place of pw.x, and the
handlers answer for what it raised -- a non-converged SCF retried with safer mixing, a run
stopped at max_seconds resumed from its checkpoint, a run that stopped before its first SCF
iteration given up on -- each retry recorded as a Correction."""

import dataclasses
import shutil
from pathlib import Path

import pytest

from tmdflow.calculators.espresso.adapter import EspressoCalculator
from tmdflow.calculators.espresso.pwinput import OUTDIR, PREFIX
from tmdflow.calculators.espresso.profile import EspressoProfile
from tmdflow.calculators.records import RunRecord
from tmdflow.errors import CalculationFailed, MaxSecondsTooShort, ScfNotConverged, WalltimeReached
from tmdflow.presets import load_preset
from tmdflow.restarts import (
    MAX_SCF_CORRECTIONS, SCF_HANDLERS, STEP_HANDLERS, Action, Attempt, decide, run_with_handlers,
)
from tmdflow.structures import build_monolayer
from tests.helpers import QE67


UNCONVERGED = (QE67 / "mos2_test_scf_unconverged", "scf_soc", 2)  # pw.x exit status 2
CONVERGED = (QE67 / "mos2_quick_soc", "scf_soc", 0)
STOPPED = (QE67 / "mos2_test_relax_resumed", "relax.out.1", 0)  # stopped at max_seconds after 8 iterations
RESUMED = (QE67 / "mos2_test_relax_resumed", "relax", 0)


class ReplayProfile(EspressoProfile):
    """pw.x replaced by real outputs, one per run, in order; the inputs tmdflow wrote are kept."""

    def __init__(self, runs):
        super().__init__(pw_command="pw.x")
        self.runs, self.inputs = list(runs), []

    def argv(self, command, parallel=True, pools=1):
        return [command]

    def run(self, command, directory, input_name, output_name, parallel=True, progress=None, label="", pools=1,
            deadline=None):
        folder, stem, returncode = self.runs.pop(0)
        self.inputs.append((directory / input_name).read_text())
        out = folder / stem if "." in stem else folder / f"{stem}.out"
        shutil.copyfile(out, directory / output_name)
        xml = folder / f"{stem}.xml"
        if xml.is_file():
            save = directory / OUTDIR / f"{PREFIX}.save"
            save.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(xml, save / "data-file-schema.xml")
        return RunRecord("pw.x", ("pw.x",), directory, returncode, 1.0)


def _pseudos(pseudo_dir: Path, rel: int) -> dict[str, Path]:
    files = {el: Path(pseudo_dir) / "pslibrary-paw" / f"{el}.rel{rel}.UPF" for el in ("Mo", "S")}
    if not all(p.is_file() for p in files.values()):
        pytest.skip("the generated pslibrary-paw files are not in the cache (scripts/bootstrap.sh)")
    return files


def _pw(calc, kind: str):
    """The adapter's pw.x-level method (``pw_scf``/``pw_relax``; ``scf``/``relax`` before the typed
    job protocol took those names)."""
    return getattr(calc, f"pw_{kind}", None) or getattr(calc, kind)


def _mos2():
    return build_monolayer("MoS2", 3.193, 1.567, 10.0)


def _input_value(text: str, key: str) -> float:
    return float(next(l for l in text.splitlines() if l.strip().startswith(key)).split("=")[1].strip().rstrip(","))


def test_a_real_unconverged_scf_is_retried_with_safer_mixing_and_recorded(tmp_path, pseudo_dir):
    profile = ReplayProfile([UNCONVERGED, CONVERGED])
    calc, preset, corrections = EspressoCalculator(profile), load_preset("test"), []
    result = run_with_handlers(
        lambda attempt: _pw(calc, "scf")(_mos2(), attempt.preset, tmp_path, _pseudos(pseudo_dir, 2), True, (3, 3, 1),
                                           step="scf_soc"),
        SCF_HANDLERS, preset, corrections)
    assert result.xml.converged is True
    (fix,) = corrections
    assert fix.handler == "scf_not_converged" and fix.attempt == 1 and "SCF not converged" in fix.reason
    assert fix.changes == {"mixing_beta": round(preset.mixing_beta / 2, 4),
                           "electron_maxstep": max(preset.electron_maxstep * 2, 100)}
    first, second = profile.inputs  # the retry ran with the changes
    assert _input_value(first, "mixing_beta") == preset.mixing_beta
    assert _input_value(second, "mixing_beta") == fix.changes["mixing_beta"]
    assert _input_value(second, "electron_maxstep") == fix.changes["electron_maxstep"]


def test_an_scf_that_never_converges_gives_up_after_the_bound(tmp_path, pseudo_dir):
    profile = ReplayProfile([UNCONVERGED] * (MAX_SCF_CORRECTIONS + 2))
    calc, corrections = EspressoCalculator(profile), []
    with pytest.raises(ScfNotConverged) as err:
        run_with_handlers(
            lambda attempt: _pw(calc, "scf")(_mos2(), attempt.preset, tmp_path, _pseudos(pseudo_dir, 2), True, (3, 3, 1),
                                           step="scf_soc"),
            SCF_HANDLERS, load_preset("test"), corrections)
    assert err.value.exit_code == 31
    assert [c.attempt for c in corrections] == list(range(1, MAX_SCF_CORRECTIONS + 1))
    assert len(profile.inputs) == MAX_SCF_CORRECTIONS + 1 and len(profile.runs) == 1  # no further run
    betas = [_input_value(text, "mixing_beta") for text in profile.inputs]
    assert betas == sorted(betas, reverse=True) and betas[-1] < betas[0]


def test_a_real_run_stopped_at_max_seconds_is_resumed_from_its_checkpoint(tmp_path, pseudo_dir):
    profile = ReplayProfile([STOPPED, RESUMED])
    calc, corrections = EspressoCalculator(profile), []
    directory = tmp_path / "relax"
    result, _ = run_with_handlers(
        lambda attempt: _pw(calc, "relax")(_mos2(), attempt.preset, directory, _pseudos(pseudo_dir, 1), (3, 3, 1),
                                   variable_cell=True, step="relax", restart=attempt.restart, max_seconds=60),
        STEP_HANDLERS, load_preset("test"), corrections)
    (fix,) = corrections
    assert fix.handler == "walltime_reached" and fix.changes == {"restart_mode": "restart"} and fix.attempt == 1
    first, second = profile.inputs
    assert "restart_mode" not in first and "restart_mode = 'restart'" in second
    # the stopped run's output is set aside and costed with the resumed one
    assert (directory / "relax.out.1").is_file() and len(result.interrupted) == 1
    assert result.pw_cpu_seconds == pytest.approx(29.87 + 174.85, abs=1e-6)


def test_a_run_stopped_before_its_first_iteration_is_given_up_on(tmp_path):
    # the real stopped run cut before its first SCF iteration: what pw.x prints when max_seconds
    # ends its start-up (the stop message is the real one)
    lines = (QE67 / "mos2_test_relax_resumed" / "relax.out.1").read_text().splitlines(keepends=True)
    first_iteration = next(i for i, l in enumerate(lines) if "iteration #" in l)
    stop = next(i for i, l in enumerate(lines) if "Maximum CPU time exceeded" in l)
    folder = tmp_path / "fixture"
    folder.mkdir()
    (folder / "relax.out").write_text("".join(lines[:first_iteration] + lines[stop - 2:]))
    profile = ReplayProfile([(folder, "relax", 0)] * 2)
    calc, corrections = EspressoCalculator(profile), []
    from tmdflow.settings import load_settings

    with pytest.raises(MaxSecondsTooShort) as err:
        run_with_handlers(
            lambda attempt: _pw(calc, "relax")(_mos2(), attempt.preset, tmp_path / "relax",
                                       _pseudos(load_settings().pseudo_dir, 1), (3, 3, 1), variable_cell=True,
                                       step="relax", restart=attempt.restart, max_seconds=1),
            STEP_HANDLERS, load_preset("test"), corrections)
    assert err.value.exit_code == 34 and corrections == [] and len(profile.inputs) == 1


def test_the_first_handler_that_recognises_a_failure_answers_and_others_propagate():
    attempt = Attempt(1, load_preset("test"))
    too_short = MaxSecondsTooShort("stopped before its first SCF iteration", "raise max_seconds")
    handler, response = decide(too_short, STEP_HANDLERS, attempt)
    assert handler.name == "max_seconds_too_short" and response.action is Action.GIVE_UP
    handler, response = decide(WalltimeReached("stopped at max_seconds", "resume"), STEP_HANDLERS, attempt)
    assert handler.name == "walltime_reached" and response.action is Action.RESUME
    assert decide(CalculationFailed("crashed", "read the output"), STEP_HANDLERS, attempt) is None
    assert decide(ScfNotConverged("not converged", "mix less"), STEP_HANDLERS, attempt) is None  # not a step's
    runs = []

    def crash(attempt):
        runs.append(attempt)
        raise CalculationFailed("crashed", "read the output")

    with pytest.raises(CalculationFailed):
        run_with_handlers(crash, SCF_HANDLERS + STEP_HANDLERS, attempt.preset, [])
    assert len(runs) == 1


def test_a_retry_changes_only_the_preset_keys_it_names():
    preset = load_preset("test")
    seen = []

    def run(attempt):
        seen.append(attempt)
        if attempt.number == 1:
            raise ScfNotConverged("not converged", "mix less")
        return "done"

    assert run_with_handlers(run, SCF_HANDLERS, preset, []) == "done"
    retried = seen[1].preset
    assert dataclasses.replace(retried, mixing_beta=preset.mixing_beta,
                               electron_maxstep=preset.electron_maxstep) == preset
    assert seen[1].restart is False  # a retry starts over; only a resumption reads the checkpoint
