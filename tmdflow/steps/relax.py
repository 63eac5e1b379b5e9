"""relax: the structure of the chain.  A monolayer: the in-plane cell and the heights (a and d);
bulk 2H: the positions (z) at fixed cell.  The adapter chooses how (Quantum ESPRESSO: vc-relax
through the slab-stress cut-off ladder; WIEN2k: forces, and a by an E(a) fit); the space group
must survive."""

from __future__ import annotations

from ..errors import InputError
from ..store.documents import StructureDoc
from ..structures import spacegroup_number
from .context import StepContext, StepOutcome, task_document
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc = ctx.request, ctx.calc
    calc.check_executables(spin_texture=False)
    result = calc.relax(ctx.relax_job())
    relaxed = result.relaxed_atoms
    sg = spacegroup_number(relaxed, symprec=1e-3)
    if sg != ctx.expected_spacegroup:
        raise InputError(f"relaxation broke the symmetry: space group {sg}, expected {ctx.expected_spacegroup}",
                         f"inspect {ctx.layout.step_directory(req.step)}")
    return StepOutcome(StructureDoc.from_atoms(relaxed, sg), True, task=task_document(req, result, relaxed),
                       corrections=list(result.corrections))


SPEC = StepSpec("relax", 0, run, "relax the structure (monolayer: a and d; bulk: z)", core=True,
                requires=frozenset({"relaxation"}), moves_structure=True)
