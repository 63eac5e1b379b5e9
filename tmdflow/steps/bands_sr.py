"""bands_sr: scalar-relativistic bands on the spin-orbit bands' k list (from the scalar SCF
density in sr/) and projwfc.x orbital weights (M d_z2, M d_xy/d_x2-y2, X p_z, X p_x/p_y)
-> the dotted bands of Fig. 2 and Fig. 4."""

from __future__ import annotations

from ..calculators.espresso.adapter import valence_electrons
from ..calculators.espresso.parsers.projwfc import paper_orbital_weights
from ..errors import InputError
from ..kpoints import splitting_kpoints
from ..materials import parse_formula
from ..store.documents import BandStructureDoc
from .context import StepContext, StepOutcome, pw_task_document
from ..layout import SCALAR_BANDS_STEM
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc, atoms = ctx.request, ctx.calc, ctx.atoms
    pseudos = ctx.pseudopotentials(rels=(1,))
    files = ctx.scalar_files(pseudos)  # rel=1 (this step belongs to the scf mode only)
    calc.check_executables(spin_texture=False, projections=True)
    directory = ctx.layout.scalar
    if not ctx.layout.scf_xml(spin_orbit=False).is_file():
        raise InputError(f"{req.step}: no scalar-relativistic SCF in {directory}",
                         "run the workflow's scalar-relativistic SCF step first")
    kpts, labels = splitting_kpoints(atoms.cell[:], req.preset.path_points)
    nbnd = int(round(valence_electrons(atoms, files))) // 2 + req.preset.extra_bands
    result = calc.bands(atoms, req.preset, directory, files, spin_orbit=False, kpoints=kpts, nbnd=nbnd,
                        progress=ctx.progress, step=SCALAR_BANDS_STEM)
    ctx.layout.write_labels(directory, labels)
    proj = calc.orbital_projections(directory, progress=ctx.progress)
    metal, chalcogen = parse_formula(req.formula)
    weights = paper_orbital_weights(proj, metal, chalcogen)
    bands = calc.read_bands(directory, SCALAR_BANDS_STEM, tuple(labels))
    freed = calc.cleanup(directory)
    task = pw_task_document(req, calc, result, atoms, files, pseudos, [])
    task.outputs["scratch_freed_bytes"] = freed
    doc = BandStructureDoc.from_bands(f"{req.material_id}-{req.step}", "sr_path", bands, weights,
                                      fermi_energy_ev=result.xml.fermi_energy_ev)
    return ctx.outcome(task=task, bandstructure=doc)


SPEC = StepSpec("bands_sr", 5, run, "scalar-relativistic bands + orbital weights (Fig. 2, 4)",
                requires=frozenset({"orbital_projections"}), spin_orbit_modes=("scf",),
                needs=frozenset({"scalar_density"}))
