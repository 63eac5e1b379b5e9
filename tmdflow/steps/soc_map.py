"""soc_map: spin-orbit bands and <sigma_z> on the irreducible wedge Gamma-M-K of an N x N grid
of the zone (from the spin-orbit SCF density) -> Fig. 3 (monolayers; a bulk 2H is
Kramers-degenerate everywhere, Delta(k) = 0, so nothing runs for it).  A few check points
between the grid's points run with it: the figures step measures its interpolation on them."""

from __future__ import annotations

import numpy as np

from ..analysis.bzmap import check_points, wedge_points
from ..store.documents import BAND_MAP_KIND, BandStructureDoc
from .context import StepContext, StepOutcome, task_document
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc, atoms = ctx.request, ctx.calc, ctx.atoms
    if req.dimensionality == "bulk":  # inversion + time reversal: every level a Kramers pair
        return ctx.outcome()
    calc.check_executables(spin_texture=True, projections=False)
    result = calc.bands(ctx.bands_job(True, map_kpoints(req.preset.map_points), densities=SPEC.needs,
                                      spin_texture="sigma_z"))
    task = task_document(req, result, atoms)
    doc = BandStructureDoc.from_bands(f"{req.material_id}-{req.step}", BAND_MAP_KIND, result.bands, None,
                                      fermi_energy_ev=task.outputs.fermi_energy_ev)
    return ctx.outcome(task=task, bandstructure=doc)


#: check points computed with every map (all of them when the grid has fewer between its points):
#: 8 missed the conduction pair's hard region near Gamma-Q at the paper preset, which 32
#: independent points found (docs/performance.md); at the paper preset 24 more cost ~2 min
CHECK_POINTS = 32


def map_kpoints(n: int) -> np.ndarray:
    """The wedge of the n x n grid, then the check points between its points."""
    return np.vstack([wedge_points(n), check_points(n, CHECK_POINTS)])


SPEC = StepSpec("soc_map", 6, run, "spin-orbit band map of the zone (Fig. 3)", requires=frozenset({"band_map"}),
                dimensionalities=("monolayer",), spin_orbit_modes=("scf",), needs=frozenset({"spin_orbit_density"}),
                produces=frozenset({"band_map"}))
