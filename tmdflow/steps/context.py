"""What every step shares: the request, the outcome, the context a step runs in, and the helpers
that build its documents.  No step name is spelled here (tmdflow.steps.registry lists them).

A step is a function ``StepContext -> StepOutcome`` in its own module of this package
(docs/architecture.md, "How to add a step"); :func:`tmdflow.steps.run_step` finds it in the
registry.  No FireWorks, no database: :mod:`tmdflow.fireworks` stores the outcome.
"""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np
from ase import Atoms

from .. import identity
from ..calculators import get_calculator
from ..calculators.jobs import BandsJob, Checkpoints, Job, RelaxJob, ScfJob, StepResult
from ..errors import InputError
from ..materials import Material, get_material
from ..presets import Preset
from ..restarts import run_with_handlers, scf_handlers
from ..settings import Settings
from ..store.documents import (
    BandStructureDoc, Correction, FiguresDoc, MaterialDocument, PhononDoc, PseudoRef, StructureDoc, Table1Entry,
    TaskDocument,
)
from ..structures import BULK_SPACEGROUP, MONOLAYER_SPACEGROUP, build_bulk_2h, build_monolayer
from ..layout import RunLayout
from . import registry

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class StepRequest:
    workflow: str
    formula: str
    dimensionality: str  # "monolayer" | "bulk"
    preset: Preset
    step: str
    calculator: str = "espresso"
    structure: StructureDoc | None = None  # from the parent step (relaxed), else built from inputs/
    relaxed: bool = False
    restart: bool = False
    max_seconds: float | None = None
    geometry: dict | None = None  # starting a, d (monolayer) or a, c, z (bulk) from a user's file
    source: dict | None = None  # structure source (tmdflow.identity); None: derived (older Fireworks)
    overrides: dict | None = None  # the workflow's preset overrides, recorded beside the result
    result_digest: str | None = None  # tmdflow.identity.result_hash; set by resolve_identity

    @property
    def structure_source(self) -> dict:
        """Where this chain's structure comes from (tmdflow.identity).  A Firework submitted before
        identities existed has none: a chain with a relax step has it first."""
        if self.source is not None:
            return self.source
        mover = registry.structure_mover()
        relaxed_by = mover if (self.step == mover or self.relaxed) else None
        return identity.structure_source(self.formula, self.dimensionality, self.geometry, relaxed_by)

    @property
    def settings_digest(self) -> str:
        return identity.settings_hash(self.calculator, self.preset, self.structure_source)

    @property
    def material_id(self) -> str:
        """``<formula>-<dim>-<preset>[-<calculator>]-<result hash>`` (tmdflow.identity): two
        results share it only when calculator, resolved settings, structure source and
        pseudopotential files are all the same."""
        if self.result_digest is None:
            raise RuntimeError("StepRequest.material_id before resolve_identity(): a programming error")
        return identity.material_key(self.formula, self.dimensionality, self.preset.name, self.calculator,
                                     self.result_digest)

    @property
    def task_id(self) -> str:
        return f"{self.material_id}-{self.step}"


@dataclass(frozen=True)
class StepOutcome:
    structure: StructureDoc
    relaxed: bool
    task: TaskDocument | None = None
    material: MaterialDocument | None = None
    bandstructure: BandStructureDoc | None = None
    figures: FiguresDoc | None = None
    phonons: PhononDoc | None = None
    corrections: list[Correction] = field(default_factory=list)


def resolve_identity(req: StepRequest, settings: Settings) -> StepRequest:
    """``req`` with its result hash: the settings hash plus the SHA-256 of every pseudopotential
    file the material's chain uses on this worker (both relativistic kinds; none for an
    all-electron code).  Cheap: the files are generated once and their hashes are in the cache
    manifest.  Raises the usual input/pseudopotential errors before anything runs."""
    if req.result_digest is not None:
        return req
    files = get_calculator(req.calculator, settings).input_file_digests(req.formula, req.preset)
    return dataclasses.replace(req, result_digest=identity.result_hash(req.settings_digest, files))


def identity_record(req: StepRequest) -> dict:
    """What a stored document says of its identity (shown by query, status, table1, report)."""
    return {"settings_hash": req.settings_digest, "result_hash": req.result_digest,
            "workflow": req.workflow, "overrides": dict(req.overrides or {}),
            "structure_source": req.structure_source, "identity_version": identity.IDENTITY_VERSION}


def initial_structure(formula: str, dimensionality: str, preset: Preset, geometry: dict | None = None) -> Atoms:
    """Starting geometry: the user's (``geometry``, read from a structure file) or
    inputs/materials.yaml (the paper's Table I where it has one)."""
    if geometry:
        if dimensionality == "monolayer":
            return build_monolayer(formula, geometry["a"], geometry["d"], preset.vacuum)
        return build_bulk_2h(formula, geometry["a"], geometry["c"], geometry["z"])
    m = get_material(formula)
    if dimensionality == "monolayer":
        if m.monolayer is None:
            raise InputError(f"no monolayer geometry for {formula} in inputs/materials.yaml", "add one")
        return build_monolayer(formula, m.monolayer.a, m.monolayer.d, preset.vacuum)
    if dimensionality == "bulk":
        if m.bulk is None:
            raise InputError(f"no bulk 2H geometry for {formula} in inputs/materials.yaml", "add one")
        return build_bulk_2h(formula, m.bulk.a, m.bulk.c, m.bulk.z)
    raise InputError(f"dimensionality '{dimensionality}' is not monolayer or bulk", "fix the workflow")


def table1_entry(atoms: Atoms, dimensionality: str, relaxed: bool) -> Table1Entry:
    z = atoms.positions[:, 2]
    a = float(np.linalg.norm(atoms.cell[0]))
    d = float(np.min(np.abs(z[2:] - z[0]))) if dimensionality == "bulk" else float(np.mean(np.abs(z[1:] - z[0])))
    if dimensionality == "bulk":
        c = float(atoms.cell[2, 2])
        return Table1Entry(a_angstrom=a, c_angstrom=c, z=d / c, d_angstrom=d, relaxed=relaxed)
    return Table1Entry(a_angstrom=a, d_angstrom=d, relaxed=relaxed)


def kmesh_for(preset: Preset, dimensionality: str) -> tuple[int, int, int]:
    return (preset.kmesh, preset.kmesh, 1 if dimensionality == "monolayer" else preset.kmesh_bulk_kz)


def task_document(req: StepRequest, result: StepResult, atoms: Atoms) -> TaskDocument:
    """The task document of every calculation step, whatever the code: its run (input text, code
    version, wall time, directory), parsed outputs, the input files that identify it
    (pseudopotentials; none for all-electron codes), the automatic corrections and the identity."""
    return TaskDocument(
        task_id=req.task_id, formula=req.formula, dimensionality=req.dimensionality, preset=req.preset.name,
        step=req.step, calculator=req.calculator, code_version=result.code_version,
        inputs={result.input_kind: result.input_text, "preset": dataclasses.asdict(req.preset)},
        structure=StructureDoc.from_atoms(atoms), outputs=result.outputs(),
        pseudopotentials={el: PseudoRef(file=ref.file, sha256=ref.sha256, source=ref.source)
                          for el, ref in result.input_files().items()},
        wall_seconds=result.wall_seconds, directory=str(result.directory), host=socket.gethostname(),
        corrections=list(result.corrections), identity=identity_record(req),
    )


def run_scf(calc, job: ScfJob) -> StepResult:
    """``calc.scf(job)`` under the SCF restart handler (:func:`tmdflow.restarts.scf_handlers`), the
    same for every code: an SCF that does not converge is retried with what the adapter calls
    safer (``calc.scf_retry_changes(preset)``: half the mixing for pw.x, more iterations for WIEN2k
    and Elk), up to ``restarts.MAX_SCF_CORRECTIONS`` times, each retry recorded as a Correction in
    ``result.corrections``; an adapter that has nothing safer to offer (None) gets the error back
    at once."""
    corrections: list[Correction] = []
    result = run_with_handlers(lambda attempt: calc.scf(dataclasses.replace(job, preset=attempt.preset)),
                               scf_handlers(calc), job.preset, corrections)
    return dataclasses.replace(result, corrections=[*corrections, *result.corrections]) if corrections else result


@dataclass
class StepContext:
    """Everything a step function needs: the request (with its identity resolved), the machine
    settings, the run layout of its material, the calculator adapter and the starting structure."""

    request: StepRequest
    settings: Settings
    layout: RunLayout
    calc: object  # a tmdflow.calculators.base.CalculatorAdapter
    atoms: Atoms
    progress: ProgressFn | None = None  # already prefixed with the material
    checkpoints: Checkpoints | None = None  # where a long step keeps its finished parts (a Firework: the store)

    @property
    def preset(self) -> Preset:
        return self.request.preset

    @property
    def kmesh(self) -> tuple[int, int, int]:
        return kmesh_for(self.request.preset, self.request.dimensionality)

    @property
    def expected_spacegroup(self) -> int:
        return MONOLAYER_SPACEGROUP if self.request.dimensionality == "monolayer" else BULK_SPACEGROUP

    @property
    def second_variational(self) -> bool:
        return self.request.preset.spin_orbit_mode == "second_variational"

    @cached_property
    def material(self) -> Material:
        return get_material(self.request.formula)

    def outcome(self, **documents) -> "StepOutcome":
        """The outcome of a step that keeps the structure it was given."""
        req = self.request
        return StepOutcome(req.structure or StructureDoc.from_atoms(self.atoms), req.relaxed, **documents)

    def job(self, kind: type[Job] = Job, **fields) -> Job:
        """A calculator job of this step (tmdflow.calculators.jobs): the request, the structure,
        the layout and the step's k-mesh and symmetry, plus ``fields`` of the job's kind."""
        req = self.request
        common = dict(step=req.step, formula=req.formula, dimensionality=req.dimensionality, atoms=self.atoms,
                      preset=req.preset, layout=self.layout, kmesh=self.kmesh,
                      expected_spacegroup=self.expected_spacegroup, restart=req.restart, max_seconds=req.max_seconds,
                      progress=self.progress, checkpoints=self.checkpoints)
        return kind(**{**common, **fields})

    def scf_job(self, spin_orbit: bool) -> ScfJob:
        """This step's SCF; a spin-orbit one may continue from the scalar-relativistic density of
        an earlier step (the registry's producers of ``scalar_density``)."""
        return self.job(ScfJob, spin_orbit=spin_orbit,
                        continues_from=registry.producers("scalar_density", before=self.request.step) if spin_orbit
                        else ())

    def relax_job(self) -> RelaxJob:
        """This step's relaxation: a monolayer's cell in-plane too, a bulk crystal's positions."""
        return self.job(RelaxJob, variable_cell=self.request.dimensionality == "monolayer")

    def bands_job(self, spin_orbit: bool, kpoints, labels=(), densities=None, **fields) -> BandsJob:
        """Bands of this step on ``kpoints`` from the potential of the earlier SCF steps that
        produce ``densities`` (default: the spin-orbit density first, then the scalar-relativistic
        one; a scalar run: the scalar one), found in the registry."""
        step = self.request.step
        if densities is None:
            densities = ("spin_orbit_density", "scalar_density") if spin_orbit else ("scalar_density",)
        potential = tuple(s for d in sorted(densities, key=lambda d: d != "spin_orbit_density")
                          for s in registry.producers(d, before=step))
        return self.job(BandsJob, spin_orbit=spin_orbit, kpoints=tuple(kpoints), labels=tuple(labels),
                        potential_from=potential, **fields)
