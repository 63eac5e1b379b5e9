"""One monolayer, end to end, on this machine: the workflow steps run in sequence, no database.

    SCF (spin-orbit, or scalar-relativistic in the second-variational mode) -> spin-orbit bands
    on Gamma, K, K', M, Q (+ path) -> bands.x spin texture -> analysis

This is ``tmdflow compute`` / ``tmdflow paper``; the same :func:`tmdflow.steps.run_step` serves
the FireWorks workflows, so both paths run identical code, under the same step restart handlers
(:data:`tmdflow.restarts.STEP_HANDLERS`): a step pw.x stopped at ``max_seconds`` is resumed here,
in this process, from the checkpoint it wrote (the Firetask resumes it in a detour).  Input checks (formula, geometry,
preset, executables, pseudopotential kind) all happen before pw.x runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .analysis.splitting import SplittingResult
from .errors import InputError
from .identity import given_structure_source
from .kpoints import monkhorst_pack_2d
from .materials import Material, get_material
from .presets import Preset
from .restarts import STEP_HANDLERS, Attempt, run_with_handlers
from .settings import Settings
from .steps import StepOutcome, StepRequest, run_step
from .steps import registry as step_registry
from .store.documents import Correction, StructureDoc
from .structures import build_monolayer

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class StepSummary:
    step: str
    wall_seconds: float
    converged: bool | None
    n_scf_steps: int | None
    qe_version: str
    corrections: tuple[dict, ...] = ()  # automatic recoveries applied (e.g. safer mixing)


@dataclass(frozen=True)
class ComputeResult:
    formula: str
    dimensionality: str
    preset: str
    spin_orbit_mode: str
    a: float
    d: float
    vacuum: float
    kmesh: tuple[int, int, int]
    splitting: SplittingResult
    total_energy_ev: float | None
    steps: tuple[StepSummary, ...]
    pseudopotentials: dict = field(default_factory=dict)
    directory: str = ""
    scratch_freed_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_geometry(material: Material, a: float | None, d: float | None) -> tuple[float, float]:
    if (a is None or d is None) and material.monolayer is None:
        raise InputError(
            f"no monolayer lattice parameters for {material.formula} in inputs/materials.yaml",
            "give them explicitly (--a and --d, Angstrom) or add the material to inputs/materials.yaml",
        )
    return (a if a is not None else material.monolayer.a, d if d is not None else material.monolayer.d)


def run_step_resuming(request: StepRequest, settings: Settings, run_root: Path,
                      progress: ProgressFn | None = None) -> StepOutcome:
    """:func:`tmdflow.steps.run_step` under the step restart handlers: a step stopped at
    max_seconds is run again from its checkpoint (``restart``), each resumption recorded as a
    Correction in its task (first, before the step's own); one that stopped before its first
    SCF iteration is not resumed (MaxSecondsTooShort, exit 34)."""
    corrections: list[Correction] = []

    def attempt_step(attempt: Attempt) -> StepOutcome:
        if attempt.number > 1 and progress:
            progress(f"{request.step}: resuming from the checkpoint (attempt {attempt.number})")
        return run_step(dataclasses.replace(request, restart=attempt.restart), settings, run_root, progress)

    outcome = run_with_handlers(attempt_step, STEP_HANDLERS, request.preset, corrections, restart=request.restart)
    if corrections and outcome.task is not None:
        outcome.task.corrections[:0] = corrections
    return outcome


def compute_material(
    formula: str,
    preset: Preset,
    settings: Settings,
    a: float | None = None,
    d: float | None = None,
    vacuum: float | None = None,
    directory: Path | None = None,
    progress: ProgressFn | None = None,
    calculator: str = "espresso",
    max_seconds: float | None = None,
) -> ComputeResult:
    """Run the monolayer pipeline; files go to ``<directory or work_dir>/<material key>/``
    (``<formula>-monolayer-<preset>[-<calculator>]-<result hash>``, tmdflow.identity); ``calculator``
    is a registered adapter (espresso, wien2k, elk).  ``max_seconds``: pw.x's limit for each run
    of a step; a step it stops is resumed from its checkpoint (:func:`run_step_resuming`)."""
    material = get_material(formula)
    a, d = resolve_geometry(material, a, d)
    vacuum = preset.vacuum if vacuum is None else vacuum
    structure = StructureDoc.from_atoms(build_monolayer(material.formula, a, d, vacuum))
    run_root = Path(directory or settings.work_dir)
    source = given_structure_source(structure.model_dump())  # the identity of the result (tmdflow.identity)
    outcomes = [
        run_step_resuming(StepRequest("compute", material.formula, "monolayer", preset, step, calculator=calculator,
                                      structure=structure, source=source, max_seconds=max_seconds),
                          settings, run_root, progress)
        for step in step_registry.required(preset.spin_orbit_mode)
    ]
    tasks = [o.task for o in outcomes if o.task is not None]
    material_doc = outcomes[-1].material
    return ComputeResult(
        formula=material.formula,
        dimensionality="monolayer",
        preset=preset.name,
        spin_orbit_mode=preset.spin_orbit_mode,
        a=a, d=d, vacuum=vacuum, kmesh=monkhorst_pack_2d(preset.kmesh),
        splitting=material_doc.splitting,
        total_energy_ev=tasks[0].outputs.total_energy_ev,
        steps=tuple(StepSummary(t.step, t.wall_seconds or 0.0, t.outputs.converged,
                                t.outputs.n_scf_steps, t.code_version or "",
                                tuple(c.model_dump() for c in t.corrections)) for t in tasks),
        pseudopotentials={el: ref.model_dump() for el, ref in tasks[-1].pseudopotentials.items()},
        directory=str(run_root / material_doc.material_id),
        scratch_freed_bytes=int(tasks[-1].outputs.scratch_freed_bytes or 0),
    )
