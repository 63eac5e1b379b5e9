"""The monolayer relaxation with its stress check: relax, check the slab's σ_zz, relax again higher.

A vc-relax (``cell_dofree='2Dxy'``) zeroes the in-plane stress, but a finite plane-wave basis adds
an isotropic (Pulay) stress to it; the slab's σ_zz, which must vanish, shows its size
(:mod:`tmdflow.analysis.slab_stress`).  When |σ_zz| exceeds the preset's ``relax_stress_zz_thr``
the relaxation is repeated from its own result at ``ecutwfc + relax_cutoff_step`` (ecutrho keeps
its ratio), at most ``relax_cutoff_raises`` times -- a restart handler in the aiida sense,
recorded as a :class:`Correction`.  Rung 0 runs in ``<step>/`` (``relax/``), rung n in
``<step>-<ecutwfc>Ry/`` (``step``: the job's step name), so every relaxation's files stay for
inspection.  A step resumed after max_seconds reuses the rungs that finished and resumes the one
that was interrupted.  The result lists every rung
(cut-offs, a, σ_zz^b, pw.x CPU and wall time), so the step's cost is that of all its relaxations.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
from ase import Atoms

from ...analysis.slab_stress import SlabStress, raised_cutoffs, slab_stress
from ...errors import CalculationFailed, PulayStressTooLarge
from ...presets import Preset
from ...store.documents import Correction

HANDLER = "slab_pulay_stress"


class Relaxer(Protocol):
    """What the ladder asks of the pw.x adapter (tmdflow.calculators.espresso.adapter.EspressoCalculator):
    one relaxation in a directory, and one read back from a directory where it finished.  The
    results are the adapter's PwStepResult (``xml``, ``run``, ``pw_cpu_seconds``, ``interrupted``)."""

    def pw_relax(self, atoms: Atoms, preset: Preset, directory: Path, pseudo_files: Mapping[str, Path],
                 kmesh: tuple[int, int, int], variable_cell: bool, step: str,
                 progress: Callable[[str], None] | None = None, restart: bool = False,
                 max_seconds: float | None = None) -> tuple[Any, Atoms]: ...

    def finished_relax(self, directory: Path, step: str) -> tuple[Any, Atoms] | None: ...


@dataclass(frozen=True)
class RelaxRung:
    """One relaxation of the ladder: what it ended with and what it cost.  ``reused``: read back
    from a finished earlier run when the step was resumed (its times are that run's).
    ``interrupted_runs``: pw.x runs of this relaxation stopped at max_seconds before the one that
    finished it (their CPU time is in ``pw_cpu_seconds``)."""

    directory: Path
    ecutwfc: float
    ecutrho: float
    a_angstrom: float
    sigma_zz_basis_kbar: float
    passed: bool
    pw_cpu_seconds: float | None
    wall_seconds: float
    reused: bool
    interrupted_runs: int = 0

    def as_output(self) -> dict:
        """The form stored in the relax task (``outputs.relax_rungs``)."""
        return {"directory": str(self.directory), "ecutwfc": self.ecutwfc, "ecutrho": self.ecutrho,
                "a_angstrom": self.a_angstrom, "sigma_zz_basis_kbar": self.sigma_zz_basis_kbar,
                "passed": self.passed, "pw_cpu_seconds": self.pw_cpu_seconds, "wall_seconds": self.wall_seconds,
                "reused": self.reused, "interrupted_runs": self.interrupted_runs}


@dataclass(frozen=True)
class MonolayerRelaxation:
    """The relax step's answer: the last (passing) relaxation, its structure and check, and every rung."""

    result: Any  # the adapter's PwStepResult of the last rung
    atoms: Atoms
    check: SlabStress
    rungs: tuple[RelaxRung, ...]

    @property
    def pw_cpu_seconds(self) -> float | None:
        """pw.x CPU time of all rungs (reused ones included: the step's cost), None if pw.x printed none."""
        times = [r.pw_cpu_seconds for r in self.rungs if r.pw_cpu_seconds is not None]
        return sum(times) if times else None

    @property
    def wall_seconds(self) -> float:
        """Wall time of the rungs that ran in this execution (a reused rung costs nothing now)."""
        return sum(r.wall_seconds for r in self.rungs if not r.reused)

    @property
    def interrupted_runs(self) -> int:
        """pw.x runs of all rungs that stopped at max_seconds and were resumed."""
        return sum(r.interrupted_runs for r in self.rungs)


def cutoff_ladder(preset: Preset) -> list[tuple[float, float]]:
    """(ecutwfc, ecutrho) of every relaxation the step may run: the preset's cell-relaxation
    cut-offs, then ``relax_cutoff_raises`` rungs ``relax_cutoff_step`` Ry apart."""
    ladder = [preset.cell_relax_cutoffs()]
    for _ in range(preset.relax_cutoff_raises):
        ladder.append(raised_cutoffs(*ladder[-1], preset.relax_cutoff_step))
    return ladder


def rung_directory(root: Path, rung: int, ecutwfc: float, step: str) -> Path:
    """``<step>/`` for the first rung, ``<step>-<ecutwfc>Ry/`` for the raised ones (``step``: the
    relaxation's step name, which also names its files)."""
    return Path(root) / (step if rung == 0 else f"{step}-{ecutwfc:g}Ry")


def relax_monolayer(calc: Relaxer, atoms: Atoms, preset: Preset, root: Path,
                    pseudo_files: Mapping[str, Path], kmesh: tuple[int, int, int], corrections: list[Correction],
                    restart: bool = False, max_seconds: float | None = None,
                    progress: Callable[[str], None] | None = None, *, step: str) -> MonolayerRelaxation:
    """Relax monolayer ``atoms`` for step ``step`` (its name names the rungs' directories under
    ``root`` and their files) until its stress passes the slab check; returns the last
    relaxation, its structure and its check, and the record of every rung.  Raises :class:`PulayStressTooLarge` when the last
    rung still fails (its files stay; the error names the cut-offs to try)."""
    ladder = cutoff_ladder(preset)
    directories = [rung_directory(root, i, w, step) for i, (w, _) in enumerate(ladder)]
    if restart:
        started = [i for i, d in enumerate(directories) if d.is_dir()]
        resume_at = started[-1] if started else 0
    else:  # a fresh run: rungs left by an earlier run of this step must not be mistaken for this one's
        for stale in directories[1:]:
            shutil.rmtree(stale, ignore_errors=True)
        resume_at = 0
    current = atoms
    rungs: list[RelaxRung] = []
    for rung, ((ecutwfc, ecutrho), directory) in enumerate(zip(ladder, directories)):
        done = calc.finished_relax(directory, step) if restart and rung <= resume_at else None
        if done is None and rung < resume_at:
            raise CalculationFailed(
                f"{step}: resuming at {directories[resume_at].name}, but the relaxation before it in {directory} "
                "did not finish", f"rerun the relax step from the start (tmdflow rerun), or inspect {directory}")
        if done is not None:
            result, relaxed = done
        else:
            result, relaxed = calc.pw_relax(
                current, dataclasses.replace(preset, ecutwfc=ecutwfc, ecutrho=ecutrho), directory, pseudo_files,
                kmesh, variable_cell=True, progress=progress, step=step, restart=restart and rung == resume_at,
                max_seconds=max_seconds)
        x = result.xml
        check = slab_stress(x.stress_gpa, x.forces_ev_per_angstrom, x.positions_angstrom, x.cell_angstrom,
                            preset.relax_stress_zz_thr)
        rungs.append(RelaxRung(directory, ecutwfc, ecutrho, float(np.linalg.norm(relaxed.cell[0])),
                               check.sigma_zz_basis_kbar, check.passed, result.pw_cpu_seconds,
                               result.run.wall_seconds, reused=done is not None,
                               interrupted_runs=len(result.interrupted)))
        if check.passed:
            return MonolayerRelaxation(result, relaxed, check, tuple(rungs))
        reason = check.describe(ecutwfc, ecutrho)
        if rung == len(ladder) - 1:
            nxt = raised_cutoffs(ecutwfc, ecutrho, preset.relax_cutoff_step)
            raise PulayStressTooLarge(
                f"{step}: {reason}, after {rung} cut-off raise(s) (relax_cutoff_raises = {preset.relax_cutoff_raises}); "
                f"relaxations kept in {', '.join(str(d) for d in directories)}",
                f"relax at higher cut-offs: overrides relax_ecutwfc: {nxt[0]:g}, relax_ecutrho: {nxt[1]:g} (or a larger "
                "relax_cutoff_raises), then rerun the relax step; relax_stress_zz_thr sets the tolerance")
        raised = ladder[rung + 1]
        corrections.append(Correction(handler=HANDLER, reason=reason,
                                      changes={"relax_ecutwfc": raised[0], "relax_ecutrho": raised[1]},
                                      attempt=rung + 1))
        if progress:
            progress(f"{step}: sigma_zz {check.sigma_zz_basis_kbar:+.2f} kbar at {ecutwfc:g} Ry exceeds "
                     f"{preset.relax_stress_zz_thr:g}: relaxing again at {raised[0]:g}/{raised[1]:g} Ry")
        current = relaxed
    raise AssertionError("unreachable")
