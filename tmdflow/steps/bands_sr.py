"""bands_sr: scalar-relativistic bands on the spin-orbit bands' k list (from the scalar SCF
density) and the orbital weights (M d_z2, M d_xy/d_x2-y2, X p_z, X p_x/p_y) -> the dotted bands
of Fig. 2 and Fig. 4."""

from __future__ import annotations

from ..store.documents import BandStructureDoc
from .context import StepContext, StepOutcome, task_document
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc, atoms = ctx.request, ctx.calc, ctx.atoms
    calc.check_executables(spin_texture=False, projections=True)
    kpts, labels = calc.splitting_kpoints(atoms, req.preset.path_points)
    result = calc.bands(ctx.bands_job(False, kpts, labels, orbital_projections=True))
    ctx.layout.write_labels(result.directory, labels)
    weights = calc.orbital_weights(result.directory, req.formula)
    task = task_document(req, result, atoms)
    doc = BandStructureDoc.from_bands(f"{req.material_id}-{req.step}", "sr_path", result.bands, weights,
                                      fermi_energy_ev=task.outputs.fermi_energy_ev)
    return ctx.outcome(task=task, bandstructure=doc)


SPEC = StepSpec("bands_sr", 5, run, "scalar-relativistic bands + orbital weights (Fig. 2, 4)",
                requires=frozenset({"orbital_projections"}), spin_orbit_modes=("scf",),
                needs=frozenset({"scalar_density"}), produces=frozenset({"scalar_bands"}))
