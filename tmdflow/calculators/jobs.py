"""What the shared step flow hands a calculator (typed jobs) and what every adapter hands back
(the :class:`StepResult` protocol).

A step builds a job from its context (tmdflow.steps.context.StepContext.job) and calls
``calc.scf(job)``, ``calc.relax(job)`` or ``calc.bands(job)``; the adapter decides everything
code-specific (directories inside ``job.layout``, input files, pseudopotentials or basis,
post-processing) and names its files after ``job.step`` -- no adapter spells a step name.  The
result carries what the one task-document constructor (tmdflow.steps.context.task_document)
stores.  Plain dataclasses: no database, no FireWorks.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Protocol

from ase import Atoms

from ..layout import RunLayout
from ..presets import Preset

ProgressFn = Callable[[str], None]
KPoint = tuple[Fraction, Fraction, Fraction]  # crystal coordinates of the reciprocal cell, exact


class Checkpoints(Protocol):
    """Where an adapter keeps the finished parts of a long calculation (the points of an E(a)
    scan) so that they outlive the run directory: a rerun of the step -- after a lost launcher,
    or through a store backup on another machine -- reads them back instead of computing them
    again.  ``key``: a hash of exactly the inputs the part ran on (the adapter computes it), so a
    part is reused only for the same inputs.  :class:`tmdflow.store.results.TaskCheckpoints`
    keeps them in the results store; ``None`` in a job: nothing is kept."""

    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, label: str, data: dict) -> None: ...


@dataclass(frozen=True)
class Job:
    """What every calculation of a step needs."""

    step: str  # the requesting step's name: adapters name their directories and files after it
    formula: str
    dimensionality: str  # "monolayer" | "bulk"
    atoms: Atoms
    preset: Preset
    layout: RunLayout  # the material's run (tmdflow.layout)
    kmesh: tuple[int, int, int]
    expected_spacegroup: int  # what the structure must keep (187 monolayer, 194 bulk 2H)
    restart: bool = False  # resume an interrupted run (after max_seconds)
    max_seconds: float | None = None
    progress: ProgressFn | None = None
    checkpoints: Checkpoints | None = None  # finished parts of a long step, kept beyond the run
    #: run here instead of where the adapter puts the step in ``layout`` (one phonon
    #: displacement; a test's case directory)
    directory: Path | None = None


@dataclass(frozen=True)
class ScfJob(Job):
    """A self-consistent calculation."""

    spin_orbit: bool = False
    #: SCF steps of the same chain whose converged density this one may continue from, in order of
    #: preference (the spin-orbit SCF from the scalar-relativistic one); derived from the registry
    continues_from: tuple[str, ...] = ()
    #: file stem of the run (default: ``step``)
    stem: str | None = None
    stress: bool = True  # also the stress tensor (costly with PAW; not needed for phonon forces)

    @property
    def name(self) -> str:
        return self.stem or self.step


@dataclass(frozen=True)
class RelaxJob(Job):
    """A relaxation: ``variable_cell`` relaxes the in-plane cell too (a monolayer's a and d);
    else the positions only (bulk 2H: z at the experimental a, c)."""

    variable_cell: bool = False


@dataclass(frozen=True)
class BandsJob(Job):
    """Eigenvalues on an explicit k list from the potential of an earlier SCF."""

    spin_orbit: bool = True
    #: crystal coordinates: exact fractions or floats, as the adapter's ``splitting_kpoints`` gives them
    kpoints: tuple[KPoint, ...] | Any = ()
    labels: tuple[str, ...] = ()  # one per k-point ("" for path points)
    #: "full": <sigma_x,y,z> of every state (where the code can; monolayers), "sigma_z": <sigma_z>
    #: only, None: no spin texture
    spin_texture: str | None = None
    orbital_projections: bool = False  # also the orbital weights of every state (where the code can)
    #: SCF steps whose potential the bands may use, in order of preference (from the registry's
    #: produces/needs: the spin-orbit SCF's density first, then the scalar-relativistic one)
    potential_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputFileRef:
    """An input file a run read whose content decides its numbers (a pseudopotential)."""

    file: str
    sha256: str
    source: str | None = None  # where it came from (a pseudopotential family, the user's directory)


class StepResult(Protocol):
    """What every adapter returns for a job (tmdflow.steps.context.task_document stores it)."""

    step: str
    directory: Path
    input_text: str
    input_kind: str  # the task's inputs key for ``input_text`` ("pw_input", "commands_and_files")
    code_version: str | None
    #: the structure the run ended with (a relaxation), else None
    relaxed_atoms: Atoms | None

    @property
    def wall_seconds(self) -> float: ...

    def outputs(self) -> dict[str, Any]: ...

    #: the files whose hashes identify the result (pseudopotentials; {} for all-electron codes)
    def input_files(self) -> dict[str, InputFileRef]: ...

    #: automatic recoveries inside the adapter (tmdflow.store.documents.Correction)
    corrections: list
