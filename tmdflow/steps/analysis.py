"""analysis: Delta_VB(K), Delta_CB(K), dE_Gamma-K and the gap from the spin-orbit bands
(tmdflow.analysis.splitting), stored as the material document and its band structure."""

from __future__ import annotations

from ..analysis.splitting import analyze_bands
from ..store.documents import BandStructureDoc, MaterialDocument, StructureDoc
from . import registry
from .context import StepContext, StepOutcome, identity_record, table1_entry
from .registry import BOTH_MODES, StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc = ctx.request, ctx.calc
    directory = calc.bands_directory(ctx.layout.root, req.formula)
    bands = calc.read_spin_orbit_bands(directory, ctx.layout.read_labels(directory),
                                       step=registry.producers("spin_orbit_bands", before=SPEC.name)[0])
    splitting = analyze_bands(bands)
    earlier = [s.name for s in registry.all_steps() if s.core and s.order < SPEC.order]
    bs_id = f"{req.material_id}-{earlier[-1]}"  # the band structure of the step before this one
    bs = BandStructureDoc.from_bands(bs_id, "soc_path", bands)
    material = MaterialDocument(
        material_id=req.material_id, formula=req.formula, dimensionality=req.dimensionality,
        preset=req.preset.name, calculator=req.calculator, spin_orbit_mode=req.preset.spin_orbit_mode,
        table1=table1_entry(ctx.atoms, req.dimensionality, req.relaxed),
        splitting=splitting, bandstructure_id=bs_id,
        task_ids=[f"{req.material_id}-{s}" for s in earlier], identity=identity_record(req),
        structure=StructureDoc.from_atoms(ctx.atoms),
    )
    return StepOutcome(StructureDoc.from_atoms(ctx.atoms), req.relaxed, material=material, bandstructure=bs)


SPEC = StepSpec("analysis", 4, run, "splittings, valley offset and gap from the spin-orbit bands", core=True,
                requires=frozenset({"bands"}), required_in=BOTH_MODES, needs=frozenset({"spin_orbit_bands"}))
