"""Workflow steps: one module per step, each ``SPEC = StepSpec(...)`` with ``run(ctx)``
(tmdflow.steps.registry lists them in order: relax -> scf_sr -> scf_soc -> bands_soc ->
analysis, then the optional bands_sr, soc_map, figures, phonons).

:func:`run_step` resolves the request's identity, checks that the step belongs to the preset's
spin-orbit mode, the structure and the calculator, builds the :class:`StepContext` and calls the
step.  Steps are plain functions: no FireWorks, no database (tmdflow.fireworks stores the
outcome; tests call them directly).  Directory layout: tmdflow.layout; calculator jobs:
tmdflow.calculators.jobs.
"""

from __future__ import annotations

from pathlib import Path

from ..calculators import get_calculator
from ..calculators.jobs import Checkpoints
from ..errors import InputError
from ..settings import Settings
from . import registry
from ..pseudo.selection import select_pseudopotentials  # re-exported (older imports; no step uses it)
from .context import (
    ProgressFn, StepContext, StepOutcome, StepRequest, identity_record, initial_structure, resolve_identity,
    table1_entry,
)
from ..layout import RunLayout

__all__ = ["STEPS", "CORE_STEPS", "StepContext", "StepOutcome", "StepRequest", "identity_record",
           "initial_structure", "resolve_identity", "run_step", "select_pseudopotentials", "table1_entry"]


def __getattr__(name: str):
    # the step names, in order, derived from the registry (found on first use: no import-time discovery)
    if name == "STEPS":
        return registry.names()
    if name == "CORE_STEPS":
        return registry.core_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_step(req: StepRequest, settings: Settings, run_root: Path, progress: ProgressFn | None = None,
             checkpoints: Checkpoints | None = None) -> StepOutcome:
    """Run one step of one material (the registry's function for ``req.step``); ``checkpoints``:
    where its calculator may keep finished parts of a long calculation (tmdflow.calculators.jobs)."""
    spec = registry.spec(req.step)
    mode = req.preset.spin_orbit_mode
    if mode not in spec.spin_orbit_modes:
        raise InputError(f"the {spec.name} step ({spec.summary}) is not part of the {mode} spin-orbit mode",
                         f"remove {spec.name} from the workflow's steps, or use spin_orbit_mode: "
                         f"{' or '.join(spec.spin_orbit_modes)}")
    calc = get_calculator(req.calculator, settings)
    missing = spec.requires - frozenset(calc.capabilities)
    if missing:
        raise InputError(f"the {spec.name} step needs {sorted(missing)}, which calculator '{req.calculator}' "
                         "does not implement",
                         f"remove {spec.name} from the workflow (steps of {req.calculator}: "
                         f"{list(registry.for_calculator(req.calculator))})")
    req = resolve_identity(req, settings)
    atoms = (req.structure.to_atoms() if req.structure
             else initial_structure(req.formula, req.dimensionality, req.preset, req.geometry))
    say = (lambda m: progress(f"{req.formula} {req.dimensionality}: {m}")) if progress else None
    ctx = StepContext(req, settings, RunLayout.of(run_root, req.material_id), calc, atoms, say, checkpoints)
    return spec.run(ctx)
