"""bands_soc: the spin-orbit bands at the special points (Gamma, K, K', M, Q and, with
path_points, along Gamma-M-K-Gamma; the code's own k list, ``calc.splitting_kpoints``) from the
earlier SCF's potential, with the spin texture where the code computes it.  The k-point labels
are written beside the run."""

from __future__ import annotations

from .context import StepContext, StepOutcome, task_document
from .registry import BOTH_MODES, StepSpec


def run(ctx: StepContext) -> StepOutcome:
    req, calc = ctx.request, ctx.calc
    calc.check_executables(spin_texture=req.preset.spin_texture)
    kpts, labels = calc.splitting_kpoints(ctx.atoms, req.preset.path_points)
    result = calc.bands(ctx.bands_job(True, kpts, labels, spin_texture="full" if req.preset.spin_texture else None))
    ctx.layout.write_labels(result.directory, labels)
    return ctx.outcome(task=task_document(req, result, ctx.atoms))


SPEC = StepSpec("bands_soc", 3, run, "spin-orbit bands at the special points (+ spin texture)", core=True,
                requires=frozenset({"bands"}), required_in=BOTH_MODES, produces=frozenset({"spin_orbit_bands"}))
