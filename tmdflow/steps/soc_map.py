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


#: check points computed with every map: a quarter of the wedge's points, at least 8 and at most 32
#: (all of them when the grid has fewer between its points).  8 missed the conduction pair's hard
#: region near Gamma-Q at the paper preset, which 32 independent points found (docs/performance.md)
CHECK_POINTS_MIN, CHECK_POINTS_MAX = 8, 32


def check_point_count(n: int) -> int:
    """How many check points the map of an n x n grid asks for (12: 8, 18: 10, 36: 32; at N = 6 only 3
    lie between its points, and the map takes those)."""
    return max(CHECK_POINTS_MIN, min(CHECK_POINTS_MAX, -(-len(wedge_points(n)) // 4)))


def map_kpoints(n: int) -> np.ndarray:
    """The wedge of the n x n grid, then the check points between its points."""
    return np.vstack([wedge_points(n), check_points(n, check_point_count(n))])


SPEC = StepSpec("soc_map", 6, run, "spin-orbit band map of the zone (Fig. 3)", requires=frozenset({"band_map"}),
                dimensionalities=("monolayer",), spin_orbit_modes=("scf",), needs=frozenset({"spin_orbit_density"}),
                produces=frozenset({"band_map"}))
