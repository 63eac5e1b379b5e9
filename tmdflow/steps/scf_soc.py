"""scf_soc: the self-consistent fully relativistic (noncollinear, spin-orbit) SCF, whose
charge density the spin-orbit bands reuse (it may continue from the scalar-relativistic one,
where the code can).  Not part of the second-variational mode."""

from __future__ import annotations

from .context import StepContext, StepOutcome, run_scf, task_document
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    ctx.calc.check_executables(spin_texture=False)
    result = run_scf(ctx.calc, ctx.scf_job(spin_orbit=True))
    return ctx.outcome(task=task_document(ctx.request, result, ctx.atoms), corrections=list(result.corrections))


SPEC = StepSpec("scf_soc", 2, run, "self-consistent spin-orbit SCF", core=True, requires=frozenset({"scf"}),
                spin_orbit_modes=("scf",), required_in=("scf",), produces=frozenset({"spin_orbit_density"}))
