"""scf_soc: the self-consistent fully relativistic (noncollinear, spin-orbit) SCF, whose
charge density the spin-orbit bands reuse.  Not part of the second-variational mode."""

from __future__ import annotations

from .context import StepContext, StepOutcome, pw_task_document, run_scf, task_document, with_scf_corrections
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc = ctx.request, ctx.calc
    if not calc.uses_pseudopotentials:
        calc.check_executables(spin_texture=False)
        result = run_scf(calc, ctx.scf_job(spin_orbit=True))
        return ctx.outcome(task=task_document(req, result, ctx.atoms), corrections=list(result.corrections))
    calc.check_executables(spin_texture=False)
    pseudos = ctx.pseudopotentials(rels=(2,))
    files, corrections = ctx.full_files(pseudos), []
    result = with_scf_corrections(
        lambda p: calc.scf(ctx.atoms, p, ctx.layout.spin_orbit, files, spin_orbit=True, kmesh=ctx.kmesh,
                           progress=ctx.progress, restart=req.restart, max_seconds=req.max_seconds),
        req.preset, corrections)
    return ctx.outcome(task=pw_task_document(req, calc, result, ctx.atoms, files, pseudos, corrections),
                       corrections=corrections)


SPEC = StepSpec("scf_soc", 2, run, "self-consistent spin-orbit SCF", core=True, requires=frozenset({"scf"}),
                spin_orbit_modes=("scf",), required_in=("scf",), produces=frozenset({"spin_orbit_density"}))
