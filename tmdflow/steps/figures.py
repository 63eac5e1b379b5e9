"""figures: no calculation -- the physics checks (Delta = 0 on Gamma-M, |sigma_z| at K, K'
reversal; bulk Kramers pairs) and the Fig. 2-4 analogues (PNG, SVG, CSV in figures/) from the
bands the earlier steps left in the run directory (which steps made them: the registry's
producers of spin_orbit_bands, scalar_bands, band_map; the adapter reads them)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..analysis.bzinterp import map_for_figure, unhatched_regions, valence_validated_everywhere
from ..analysis.checks import check_bulk, check_monolayer
from ..figures import FigureInfo, draw_figures, gamma_k_profile
from ..identity import describe_overrides
from ..layout import RunLayout
from ..store.documents import FiguresDoc
from . import registry
from .context import StepContext, StepOutcome, StepRequest
from .registry import StepSpec
from .wannier_map import model_bands


def run(ctx: StepContext) -> StepOutcome:
    return ctx.outcome(figures=make_figures(ctx.request, ctx.calc, ctx.layout))


def _made_by(product: str) -> str | None:
    found = registry.producers(product, before=SPEC.name)
    return found[0] if found else None


def make_figures(req: StepRequest, calc, layout: RunLayout) -> FiguresDoc:
    """Physics checks and the Fig. 2-4 analogues from the run directories."""

    soc_dir = calc.bands_directory(layout.root, req.formula)
    soc = calc.read_spin_orbit_bands(soc_dir, layout.read_labels(soc_dir), step=_made_by("spin_orbit_bands"))
    sr, weights = calc.scalar_bands(layout, _made_by("scalar_bands"), req.formula)
    map_bands = calc.band_map(layout, _made_by("band_map")) if req.dimensionality == "monolayer" else None
    model = None
    if map_bands is not None and _made_by("band_model") and "band_model" in calc.capabilities:
        wannier = calc.wannier_model(layout, _made_by("band_model"))
        model = None if wannier is None else model_bands(wannier, req.preset.map_points, map_bands)
    checks = check_monolayer(soc, map_bands) if req.dimensionality == "monolayer" else check_bulk(soc)
    out = layout.step_directory(SPEC.name)
    out.mkdir(parents=True, exist_ok=True)

    label = req.preset.name + (f" ({describe_overrides(req.overrides)})" if req.overrides else "")
    info = FigureInfo.of(f"{req.formula} {req.dimensionality}", label, req.preset)
    profile, drawn = {}, None
    stored_checks = checks.to_dict()
    if req.dimensionality == "monolayer":
        if map_bands is not None:
            drawn = map_for_figure(map_bands, req.preset.map_points, model)
            stored_checks["map_interpolation"] = {
                "points": drawn.points, "fine_points": drawn.fine_points, "method": drawn.method,
                # the share of the drawn map Fig. 3 hatches (its Delta not what the checks validate)
                "hatched_fraction": {name: float(1.0 - ok.mean()) for name, ok in unhatched_regions(
                    drawn.fine, valence_validated=valence_validated_everywhere(drawn)).items()},
                **({} if drawn.errors is None else dataclasses.asdict(drawn.errors))}
        profile = gamma_k_profile(soc, sr, weights)
    files = draw_figures(out, info, soc, sr, drawn, profile)
    return FiguresDoc(material_id=req.material_id, directory=str(out), files=[str(f) for f in files],
                      checks=stored_checks,
                      gamma_k_profile={k: [float(x) for x in np.asarray(v)] for k, v in profile.items()})


SPEC = StepSpec("figures", 8, run, "physics checks and the Fig. 2-4 analogues", requires=frozenset({"band_map"}),
                spin_orbit_modes=("scf",), needs=frozenset({"spin_orbit_bands"}),
                produces=frozenset({"figure_files"}))
