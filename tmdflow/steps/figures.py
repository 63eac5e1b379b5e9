"""figures: no calculation -- the physics checks (Delta = 0 on Gamma-M, |sigma_z| at K, K'
reversal; bulk Kramers pairs) and the Fig. 2-4 analogues (PNG, SVG, CSV in figures/) from the
bands the earlier steps left in the run directory."""

from __future__ import annotations

import numpy as np

from ..analysis.bzmap import unfold
from ..analysis.checks import check_bulk, check_monolayer
from ..calculators.espresso.parsers.projwfc import paper_orbital_weights, parse_projwfc_up
from ..figures import FigureInfo, fig2_bands, fig3_map, fig4_gamma_k, gamma_k_profile
from ..identity import describe_overrides
from ..materials import parse_formula
from ..store.documents import FiguresDoc
from .context import StepContext, StepOutcome, StepRequest
from ..layout import BAND_MAP_SIGMA, BAND_MAP_STEM, ORBITAL_PROJECTIONS, SCALAR_BANDS_STEM, RunLayout
from .registry import StepSpec


def run(ctx: StepContext) -> StepOutcome:
    return ctx.outcome(figures=make_figures(ctx.request, ctx.calc, ctx.layout))


def make_figures(req: StepRequest, calc, layout: RunLayout) -> FiguresDoc:
    """Physics checks and the Fig. 2-4 analogues from the run directories."""

    soc_dir, sr_dir = layout.spin_orbit, layout.scalar
    soc = calc.read_spin_orbit_bands(soc_dir, layout.read_labels(soc_dir))
    sr = weights = None
    if (sr_dir / f"{SCALAR_BANDS_STEM}.xml").is_file():
        sr = calc.read_bands(sr_dir, SCALAR_BANDS_STEM, layout.read_labels(sr_dir))
        if (sr_dir / ORBITAL_PROJECTIONS).is_file():
            metal, chalcogen = parse_formula(req.formula)
            weights = paper_orbital_weights(parse_projwfc_up(sr_dir / ORBITAL_PROJECTIONS), metal, chalcogen)
    map_bands = None
    if (soc_dir / f"{BAND_MAP_STEM}.xml").is_file() and req.dimensionality == "monolayer":
        map_bands = calc.read_bands(soc_dir, BAND_MAP_STEM, sigma_file=BAND_MAP_SIGMA)
    checks = check_monolayer(soc, map_bands) if req.dimensionality == "monolayer" else check_bulk(soc)
    out = layout.figures
    out.mkdir(parents=True, exist_ok=True)

    label = req.preset.name + (f" ({describe_overrides(req.overrides)})" if req.overrides else "")
    info = FigureInfo.of(f"{req.formula} {req.dimensionality}", label, req.preset)
    files = fig2_bands(soc, sr, out, info)
    profile = {}
    if req.dimensionality == "monolayer":
        if map_bands is not None:
            files += fig3_map(unfold(map_bands), out, info)
        profile = gamma_k_profile(soc, sr, weights)
        files += fig4_gamma_k(profile, out, info)
    return FiguresDoc(material_id=req.material_id, directory=str(out), files=[str(f) for f in files],
                      checks=checks.to_dict(),
                      gamma_k_profile={k: [float(x) for x in np.asarray(v)] for k, v in profile.items()})


SPEC = StepSpec("figures", 7, run, "physics checks and the Fig. 2-4 analogues", requires=frozenset({"band_map"}),
                spin_orbit_modes=("scf",), needs=frozenset({"spin_orbit_bands"}))
