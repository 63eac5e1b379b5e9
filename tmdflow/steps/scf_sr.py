"""scf_sr: the scalar-relativistic SCF (in the second-variational mode the density the
spin-orbit bands are computed on).  SCF non-convergence is retried with the adapter's safer
settings (``run_scf``, recorded)."""

from __future__ import annotations

from .context import StepContext, StepOutcome, run_scf, task_document
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    ctx.calc.check_executables(spin_texture=False)
    result = run_scf(ctx.calc, ctx.scf_job(spin_orbit=False))
    return ctx.outcome(task=task_document(ctx.request, result, ctx.atoms), corrections=list(result.corrections))


SPEC = StepSpec("scf_sr", 1, run, "scalar-relativistic SCF", core=True, requires=frozenset({"scf"}),
                required_in=("second_variational",), produces=frozenset({"scalar_density"}))
