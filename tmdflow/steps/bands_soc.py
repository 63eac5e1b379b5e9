"""bands_soc: the spin-orbit bands at the special points (Gamma, K, K', M, Q and, with
path_points, along Gamma-M-K-Gamma) from the spin-orbit SCF density, and bands.x's <sigma>
(spin texture) for a monolayer.  The k-point labels are written beside the run."""

from __future__ import annotations

import time

from ..calculators.espresso.adapter import valence_electrons
from ..kpoints import splitting_kpoints
from .context import StepContext, StepOutcome, pw_task_document, task_document
from .registry import BOTH_MODES, StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc, layout = ctx.request, ctx.calc, ctx.layout
    if not calc.uses_pseudopotentials:
        calc.check_executables(spin_texture=False)
        kpts, labels = calc.splitting_kpoints(ctx.atoms, req.preset.path_points)
        result = calc.bands(ctx.bands_job(True, kpts, labels, spin_texture="full" if req.preset.spin_texture else None))
        layout.write_labels(result.directory, labels)
        return ctx.outcome(task=task_document(req, result, ctx.atoms))
    calc.check_executables(spin_texture=req.preset.spin_texture)
    pseudos = ctx.pseudopotentials(rels=(2,))
    files, directory = ctx.full_files(pseudos), layout.spin_orbit
    kpts, labels = splitting_kpoints(ctx.atoms.cell[:], req.preset.path_points)
    nbnd = int(round(valence_electrons(ctx.atoms, files))) + 2 * req.preset.extra_bands
    result = calc.bands(ctx.atoms, req.preset, directory, files, spin_orbit=True, kpoints=kpts, nbnd=nbnd,
                        progress=ctx.progress)
    layout.write_labels(directory, labels)
    bandsx_seconds = None
    for stale in directory.glob("spin_texture.*"):  # a rerun must not pair old spins with new bands
        stale.unlink()
    # bulk 2H: inversion + time reversal make every level a Kramers pair, whose <sigma> is an
    # arbitrary choice inside the pair: bands.x would cost 1-2.5 min for nothing (docs/physics.md)
    if req.preset.spin_texture and req.dimensionality == "monolayer":
        t0 = time.monotonic()
        calc.spin_texture(directory, result, progress=ctx.progress)
        bandsx_seconds = time.monotonic() - t0
    freed = calc.cleanup(directory)
    task = pw_task_document(req, calc, result, ctx.atoms, files, pseudos, [])
    task.outputs["bandsx_wall_seconds"] = bandsx_seconds
    task.outputs["scratch_freed_bytes"] = freed
    return ctx.outcome(task=task)


SPEC = StepSpec("bands_soc", 3, run, "spin-orbit bands at the special points (+ spin texture)", core=True,
                requires=frozenset({"bands"}), required_in=BOTH_MODES, produces=frozenset({"spin_orbit_bands"}))
