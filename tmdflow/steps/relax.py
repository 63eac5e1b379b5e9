"""relax: the structure of the chain.  A monolayer: variable-cell relaxation of a and d at the
cell-relaxation cut-offs, relaxed again at higher cut-off while the slab's sigma_zz shows a
basis-set stress error (tmdflow.relax_ladder); bulk 2H: fixed-cell relaxation of z.  The space
group must survive.  All-electron codes: their own relaxation (forces; a by an E(a) fit)."""

from __future__ import annotations

from ..errors import InputError
from ..relax_ladder import relax_monolayer
from ..store.documents import StructureDoc
from ..structures import build_monolayer, spacegroup_number
from .context import StepContext, StepOutcome, pw_task_document, table1_entry, task_document
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc = ctx.request, ctx.calc
    if not calc.uses_pseudopotentials:
        calc.check_executables(spin_texture=False)
        result = calc.relax(ctx.relax_job())
        relaxed = result.relaxed_atoms
        sg = spacegroup_number(relaxed, symprec=1e-3)
        return StepOutcome(StructureDoc.from_atoms(relaxed, sg), True, task=task_document(req, result, relaxed),
                           corrections=list(result.corrections))
    calc.check_executables(spin_texture=False)
    pseudos = ctx.pseudopotentials(rels=(1, 2))
    scalar = ctx.scalar_files(pseudos)
    atoms, corrections = ctx.atoms, []
    relax_vacuum = req.preset.relax_vacuum if req.dimensionality == "monolayer" else None
    if relax_vacuum is not None:  # a and d do not feel the vacuum beyond ~10 A (docs/performance.md)
        start = table1_entry(atoms, "monolayer", False)
        atoms = build_monolayer(req.formula, start.a_angstrom, start.d_angstrom, relax_vacuum)
    check = None
    if req.dimensionality == "monolayer":  # vc-relax at the cell-relaxation cut-offs, raised until the
        # slab's sigma_zz (the stress's basis-set error) is small enough (tmdflow.relax_ladder)
        relaxation = relax_monolayer(
            calc, atoms, req.preset, ctx.layout.root, scalar, ctx.kmesh, corrections, restart=req.restart,
            max_seconds=req.max_seconds, progress=ctx.progress)
        result, relaxed_atoms, check = relaxation.result, relaxation.atoms, relaxation.check
    else:
        result, relaxed_atoms = calc.relax(
            atoms, req.preset, ctx.layout.relax, scalar, ctx.kmesh, variable_cell=False,
            progress=ctx.progress, restart=req.restart, max_seconds=req.max_seconds)
    # symmetry must survive the relaxation (2Dxy + symmetric forces keep it)
    sg = spacegroup_number(relaxed_atoms, symprec=1e-3)
    if sg != ctx.expected_spacegroup:
        raise InputError(f"relaxation broke the symmetry: space group {sg}, expected {ctx.expected_spacegroup}",
                         f"inspect {ctx.layout.relax}")
    if relax_vacuum is not None:  # the later steps run in the preset's vacuum
        final = table1_entry(relaxed_atoms, "monolayer", True)
        relaxed_atoms = build_monolayer(req.formula, final.a_angstrom, final.d_angstrom, req.preset.vacuum)
    task = pw_task_document(req, calc, result, relaxed_atoms, scalar, pseudos, corrections)
    if check is not None:  # the step's cost is that of every rung; each rung is recorded
        task.outputs["pw_cpu_seconds"] = relaxation.pw_cpu_seconds
        task.outputs["pw_runs_interrupted"] = relaxation.interrupted_runs
        task.wall_seconds = relaxation.wall_seconds
        task.outputs["relax_rungs"] = [r.as_output() for r in relaxation.rungs]
        task.outputs["slab_stress_kbar"] = {"sigma_xx": check.sigma_xx_kbar, "sigma_zz": check.sigma_zz_kbar,
                                            "sigma_zz_residual_forces": check.residual_force_kbar,
                                            "sigma_zz_basis": check.sigma_zz_basis_kbar,
                                            "threshold": check.threshold_kbar}
    return StepOutcome(StructureDoc.from_atoms(relaxed_atoms, sg), True, task=task, corrections=corrections)


SPEC = StepSpec("relax", 0, run, "relax the structure (monolayer: a and d; bulk: z)", core=True,
                requires=frozenset({"relax"}), moves_structure=True)
