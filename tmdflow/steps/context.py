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
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from ase import Atoms

from .. import identity
from ..analysis.slab_stress import GPA_TO_KBAR
from ..calculators import get_calculator
from ..calculators.jobs import BandsJob, Job, RelaxJob, ScfJob, StepResult
from ..errors import InputError, ScfNotConverged
from ..materials import Material, get_material
from ..presets import Preset
from ..pseudo import PseudoSet, ensure_pseudopotentials_by_element, user_pseudopotentials
from ..settings import Settings
from ..store.documents import (
    BandStructureDoc, Correction, FiguresDoc, MaterialDocument, PhononDoc, PseudoRef, StructureDoc, Table1Entry,
    TaskDocument,
)
from ..structures import BULK_SPACEGROUP, MONOLAYER_SPACEGROUP, build_bulk_2h, build_monolayer
from . import registry
from ..layout import RunLayout

if TYPE_CHECKING:  # pragma: no cover
    from ..calculators.espresso.adapter import PwStepResult

MAX_SCF_CORRECTIONS = 2
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


def select_pseudopotentials(material: Material, preset: Preset, settings: Settings,
                            rels: tuple[int, ...] = (1, 2), progress: ProgressFn | None = None) -> PseudoSet:
    """The preset's family, with its per-element replacements (``element_pseudo_families``), or
    the user's directory, for ``material``.

    The second-variational mode needs norm-conserving files: pw.x 6.7 stops in read_scf
    ("Reading PAW becsum") when a spin-orbit bands run reads a collinear PAW density.  Refused
    here, before anything runs.
    """
    if settings.user_pseudo_dir:
        pseudos = user_pseudopotentials(settings.user_pseudo_dir, material.elements, spin_orbit=True)
    else:
        pseudos = ensure_pseudopotentials_by_element(material.elements, preset.pseudo_family,
                                                     preset.element_pseudo_families, settings.pseudo_dir, rels=rels,
                                                     ld1_command=settings.ld1_command, progress=progress)
    if preset.spin_orbit_mode == "second_variational" and not pseudos.is_norm_conserving:
        raise InputError(
            f"spin_orbit_mode 'second_variational' needs norm-conserving pseudopotentials; "
            f"'{pseudos.family}' is not (pw.x 6.7 stops in read_scf, 'Reading PAW becsum', when a "
            "spin-orbit bands run reads a collinear PAW density)",
            "set pseudo_family: pslibrary-nc (and ecutwfc >= 70 Ry), or use spin_orbit_mode: scf",
        )
    return pseudos


def resolve_identity(req: StepRequest, settings: Settings) -> StepRequest:
    """``req`` with its result hash: the settings hash plus the SHA-256 of every pseudopotential
    file the material's chain uses on this worker (both relativistic kinds; none for an
    all-electron code).  Cheap: the files are generated once and their hashes are in the cache
    manifest.  Raises the usual input/pseudopotential errors before anything runs."""
    if req.result_digest is not None:
        return req
    files: dict[str, list[str]] = {}
    if get_calculator(req.calculator, settings).uses_pseudopotentials:
        material = get_material(req.formula)
        pseudos = select_pseudopotentials(material, req.preset, settings, rels=(1, 2))
        for table in (pseudos.scalar, pseudos.full):
            for el, pf in table.items():
                files.setdefault(el, []).append(pseudo_sha256(pseudos, el, pf.path))
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


def pw_task_document(req: StepRequest, calc, result: "PwStepResult", atoms: Atoms, files: dict[str, Path], pseudos,
                     corrections: list[Correction]) -> TaskDocument:
    """The task document of a pw.x step (its run, parsed outputs, files and identity)."""
    x = result.xml
    forces = x.forces_ev_per_angstrom
    return TaskDocument(
        task_id=req.task_id, formula=req.formula, dimensionality=req.dimensionality, preset=req.preset.name,
        step=req.step, calculator=req.calculator, code_version=x.qe_version,
        inputs={"pw_input": result.input_text, "preset": dataclasses.asdict(req.preset)},
        structure=StructureDoc.from_atoms(atoms),
        outputs={
            "total_energy_ev": x.total_energy_ev, "converged": x.converged, "relax_converged": x.relax_converged,
            "n_scf_steps": x.n_scf_steps, "fermi_energy_ev": x.fermi_energy_ev,
            "max_force_ev_per_angstrom": float(np.abs(forces).max()) if forces is not None else None,
            # diagonal of the stress tensor (kbar, of the final structure; scf and relax steps)
            "stress_diagonal_kbar": ([float(v) * GPA_TO_KBAR for v in np.diag(x.stress_gpa)]
                                     if x.stress_gpa is not None else None),
            "n_electrons": x.bands.n_electrons, "n_kpoints": len(x.bands.kpoints_crystal),
            # non-SCF runs: final eigenvalues short of the Davidson threshold (None for SCF runs,
            # where pw.x prints the same line for transient early iterations)
            "unconverged_eigenvalues": (result.stdout.unconverged_eigenvalues
                                        if x.calculation in ("bands", "nscf") else None),
            # this run and, for a step resumed after max_seconds, the interrupted runs before it
            "pw_cpu_seconds": result.pw_cpu_seconds, "pw_runs_interrupted": len(result.interrupted),
            # bands.x (bands_soc, soc_map) / projwfc.x (bands_sr) after pw.x; None for other steps
            "postprocessing_cpu_seconds": calc.postprocessing_cpu_seconds(result.directory, req.step),
        },
        pseudopotentials={el: PseudoRef(file=p.name, sha256=pseudo_sha256(pseudos, el, p), source=pseudos.source_of(el))
                          for el, p in files.items()},
        wall_seconds=result.run.wall_seconds, directory=str(result.directory), host=socket.gethostname(),
        corrections=corrections, identity=identity_record(req),
    )


def pseudo_sha256(pseudos, element: str, path: Path) -> str:
    """SHA-256 of the file a step used: from the manifest when it is the managed file, else computed."""
    for table in (pseudos.full, pseudos.scalar):
        if element in table and table[element].path == path:
            return table[element].sha256
    from .pseudo.library import sha256_of

    return sha256_of(path)


def with_scf_corrections(run: Callable[[Preset], "PwStepResult"], preset: Preset,
                         corrections: list[Correction]) -> "PwStepResult":
    """Run an SCF-type step; on non-convergence retry with safer mixing (recorded), up to a bound."""
    current = preset
    for attempt in range(1, MAX_SCF_CORRECTIONS + 2):
        try:
            return run(current)
        except ScfNotConverged as exc:
            if attempt > MAX_SCF_CORRECTIONS:
                raise
            changes = {"mixing_beta": round(current.mixing_beta / 2, 4),
                       "electron_maxstep": max(current.electron_maxstep * 2, 100)}
            corrections.append(Correction(handler="scf_not_converged", reason=exc.problem, changes=changes,
                                          attempt=attempt))
            current = dataclasses.replace(current, **changes)
    raise AssertionError("unreachable")


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
    """``calc.scf(job)`` with the SCF restart handler, the same for every code: an SCF that does
    not converge is retried with what the adapter calls safer (``calc.scf_retry_changes(preset)``:
    half the mixing for pw.x, more iterations for WIEN2k and Elk), up to MAX_SCF_CORRECTIONS times,
    each retry recorded as a Correction in ``result.corrections``; an adapter that has nothing
    safer to offer (None) gets the error back at once."""
    current, corrections = job, []
    for attempt in range(1, MAX_SCF_CORRECTIONS + 2):
        try:
            result = calc.scf(current)
        except ScfNotConverged as exc:
            changes = calc.scf_retry_changes(current.preset) if attempt <= MAX_SCF_CORRECTIONS else None
            if not changes:
                raise
            corrections.append(Correction(handler="scf_not_converged", reason=exc.problem, changes=changes,
                                          attempt=attempt))
            current = dataclasses.replace(current, preset=dataclasses.replace(current.preset, **changes))
            continue
        return dataclasses.replace(result, corrections=[*corrections, *result.corrections]) if corrections else result
    raise AssertionError("unreachable")


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

    def pseudopotentials(self, rels: tuple[int, ...]) -> PseudoSet:
        return select_pseudopotentials(self.material, self.request.preset, self.settings, rels=rels)

    def outcome(self, **documents) -> "StepOutcome":
        """The outcome of a step that keeps the structure it was given."""
        req = self.request
        return StepOutcome(req.structure or StructureDoc.from_atoms(self.atoms), req.relaxed, **documents)

    def scalar_files(self, pseudos: PseudoSet) -> dict[str, Path]:
        """Files of a scalar-relativistic step: rel=1; in the second-variational mode the same
        fully relativistic NC files as the spin-orbit step (pw.x averages them), so the density
        and the spin-orbit Hamiltonian match."""
        return {el: pseudos.for_element(el, spin_orbit=self.second_variational).path for el in self.material.elements}

    def full_files(self, pseudos: PseudoSet) -> dict[str, Path]:
        """Files of a spin-orbit step: fully relativistic."""
        return {el: pseudos.for_element(el, spin_orbit=True).path for el in self.material.elements}

    def job(self, kind: type[Job] = Job, **fields) -> Job:
        """A calculator job of this step (tmdflow.calculators.jobs): the request, the structure,
        the layout and the step's k-mesh and symmetry, plus ``fields`` of the job's kind."""
        req = self.request
        common = dict(step=req.step, formula=req.formula, dimensionality=req.dimensionality, atoms=self.atoms,
                      preset=req.preset, layout=self.layout, kmesh=self.kmesh,
                      expected_spacegroup=self.expected_spacegroup, restart=req.restart, max_seconds=req.max_seconds,
                      progress=self.progress)
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

    def bands_job(self, spin_orbit: bool, kpoints, labels=(), **fields) -> BandsJob:
        """Bands of this step on ``kpoints`` from the potential of the earlier SCF steps (the
        spin-orbit density first, then the scalar-relativistic one: registry producers)."""
        step = self.request.step
        potential = registry.producers("spin_orbit_density", before=step) if spin_orbit else ()
        potential += registry.producers("scalar_density", before=step)
        return self.job(BandsJob, spin_orbit=spin_orbit, kpoints=tuple(kpoints), labels=tuple(labels),
                        potential_from=potential, **fields)
