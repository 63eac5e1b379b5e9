"""wannier_map: a Wannier tight-binding model of the spin-orbit bands (metal d + chalcogen p
spinors, Wannier90) from a pw.x run on the full ``map_wannier_grid`` x ``map_wannier_grid`` mesh
-> Fig. 3 smooth everywhere, crossings included (monolayers, Quantum ESPRESSO; nothing runs when
the preset's ``map_wannier_grid`` is 0 or for a bulk 2H, whose levels are Kramers pairs).

The model is validated against every point the soc_map step computed directly (its wedge and its
check points), and the step stores the model's bands on the figure's fine wedge and at those points
(a band document of kind ``BAND_MAP_WANNIER_KIND``): the figures step and ``tmdflow report`` draw
Fig. 3 from them."""

from __future__ import annotations

import numpy as np

from ..analysis.bzinterp import fine_grid_size, wannier_errors
from ..analysis.bzmap import wedge_points
from ..errors import InputError
from ..store.documents import BAND_MAP_WANNIER_KIND, BandStructureDoc
from . import registry
from .context import StepContext, StepOutcome, task_document
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc = ctx.request, ctx.calc
    grid = req.preset.map_wannier_grid
    if req.dimensionality == "bulk" or not grid:
        return ctx.outcome()
    made_by = registry.producers("band_map", before=SPEC.name)
    direct = calc.band_map(ctx.layout, made_by[0]) if made_by else None
    if direct is None:
        raise InputError("wannier_map is validated against the soc_map step's direct points, and none are in "
                         f"{ctx.layout.spin_orbit}", "put soc_map before wannier_map in the workflow's steps")
    job = ctx.bands_job(True, (), densities=("spin_orbit_density",))
    run_result = calc.wannier_bands(job, grid, req.preset.map_wannier_frozen_ev)
    bands = model_bands(run_result.model, req.preset.map_points, direct)
    task = task_document(req, run_result.pw, ctx.atoms)
    task.outputs.wannier_map_errors_mev = wannier_errors(bands, direct, req.preset.map_points).as_dict()
    doc = BandStructureDoc.from_bands(f"{req.material_id}-{req.step}", BAND_MAP_WANNIER_KIND, bands, None,
                                      fermi_energy_ev=task.outputs.fermi_energy_ev)
    return ctx.outcome(task=task, bandstructure=doc)


#: the bands the stored model map keeps: the two valence pairs and the two conduction pairs around the gap
KEPT_BELOW, KEPT_ABOVE = 4, 4


def model_bands(model, map_points: int, direct):
    """The model's bands on Fig. 3's fine wedge, then at the soc_map run's direct points (in their
    order): KEPT_BELOW valence and KEPT_ABOVE conduction bands, with <sigma_z>."""
    nocc = direct.n_occupied
    k = np.vstack([wedge_points(fine_grid_size(map_points))[:, :2], np.asarray(direct.kpoints_crystal)[:, :2]])
    return model.bands(k, direct.reciprocal_cell, int(round(direct.n_electrons)),
                       keep=(nocc - KEPT_BELOW, nocc + KEPT_ABOVE - 1))


SPEC = StepSpec("wannier_map", 7, run, "Wannier model of the spin-orbit bands (Fig. 3 everywhere)",
                requires=frozenset({"band_model"}), dimensionalities=("monolayer",), spin_orbit_modes=("scf",),
                needs=frozenset({"spin_orbit_density", "band_map"}), produces=frozenset({"band_model"}))
