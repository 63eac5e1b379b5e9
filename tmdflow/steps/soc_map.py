"""soc_map: spin-orbit bands and <sigma_z> on the irreducible wedge Gamma-M-K of an N x N grid
of the zone (from the spin-orbit SCF density in soc/) -> Fig. 3 (monolayers; a bulk 2H is
Kramers-degenerate everywhere, Delta(k) = 0, so nothing runs for it)."""

from __future__ import annotations

from ..analysis.bzmap import wedge_points
from ..calculators.espresso.adapter import valence_electrons
from ..errors import InputError
from ..store.documents import BandStructureDoc
from .context import StepContext, StepOutcome, pw_task_document
from ..layout import BAND_MAP_SIGMA, BAND_MAP_STEM
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc, atoms = ctx.request, ctx.calc, ctx.atoms
    if req.dimensionality == "bulk":  # inversion + time reversal: every level a Kramers pair
        return ctx.outcome()
    pseudos = ctx.pseudopotentials(rels=(2,))
    files = ctx.full_files(pseudos)
    calc.check_executables(spin_texture=True, projections=False)
    directory = ctx.layout.spin_orbit
    if not ctx.layout.scf_xml(spin_orbit=True).is_file():
        raise InputError(f"{req.step}: no spin-orbit SCF in {directory}",
                         "run the workflow's self-consistent spin-orbit step first")
    kpts = wedge_points(req.preset.map_points)
    nbnd = int(round(valence_electrons(atoms, files))) + 2 * req.preset.extra_bands
    result = calc.bands(atoms, req.preset, directory, files, spin_orbit=True, kpoints=kpts, nbnd=nbnd,
                        progress=ctx.progress, step=BAND_MAP_STEM)
    calc.spin_texture(directory, result, progress=ctx.progress, filband=BAND_MAP_SIGMA, in_plane=False)
    bands = calc.read_bands(directory, BAND_MAP_STEM, sigma_file=BAND_MAP_SIGMA)
    freed = calc.cleanup(directory)
    task = pw_task_document(req, calc, result, atoms, files, pseudos, [])
    task.outputs["scratch_freed_bytes"] = freed
    doc = BandStructureDoc.from_bands(f"{req.material_id}-{req.step}", "soc_map", bands, None,
                                      fermi_energy_ev=result.xml.fermi_energy_ev)
    return ctx.outcome(task=task, bandstructure=doc)


SPEC = StepSpec("soc_map", 6, run, "spin-orbit band map of the zone (Fig. 3)", requires=frozenset({"band_map"}),
                dimensionalities=("monolayer",), spin_orbit_modes=("scf",), needs=frozenset({"spin_orbit_density"}))
