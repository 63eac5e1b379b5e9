"""scf_sr: the scalar-relativistic SCF (in the second-variational mode the density the
spin-orbit bands are computed on).  SCF non-convergence is retried with safer mixing
(``with_scf_corrections``, recorded)."""

from __future__ import annotations

from .context import StepContext, StepOutcome, pw_task_document, run_scf, task_document, with_scf_corrections
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc = ctx.request, ctx.calc
    if not calc.uses_pseudopotentials:
        calc.check_executables(spin_texture=False)
        result = run_scf(calc, ctx.scf_job(spin_orbit=False))
        return ctx.outcome(task=task_document(req, result, ctx.atoms), corrections=list(result.corrections))
    calc.check_executables(spin_texture=False)
    pseudos = ctx.pseudopotentials(rels=(1, 2))
    files, corrections = ctx.scalar_files(pseudos), []
    directory = ctx.layout.scalar_scf(ctx.second_variational)
    result = with_scf_corrections(
        lambda p: calc.scf(ctx.atoms, p, directory, files, spin_orbit=False, kmesh=ctx.kmesh, progress=ctx.progress,
                           restart=req.restart, max_seconds=req.max_seconds),
        req.preset, corrections)
    return ctx.outcome(task=pw_task_document(req, calc, result, ctx.atoms, files, pseudos, corrections),
                       corrections=corrections)


SPEC = StepSpec("scf_sr", 1, run, "scalar-relativistic SCF", core=True, requires=frozenset({"scf"}),
                required_in=("second_variational",), produces=frozenset({"scalar_density"}))
