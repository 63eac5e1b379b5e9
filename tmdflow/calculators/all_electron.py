"""What the all-electron adapters (WIEN2k, Elk) do alike, written once: the machine profile checks
the executables, no pseudopotential file enters the result's identity, the spin-orbit bands' k
list is given as exact fractions, a formula's case sits in ``<root>/<case_folder>/<formula>``,
and a retry of an SCF that did not converge doubles the code's
bound on the SCF loops.  Each adapter subclasses :class:`AllElectronCalculator` and names its
machine profile (``profile_type``), the preset key of that bound (``scf_loops_key``) and its
``case_folder``; the rest of the protocol (:class:`tmdflow.calculators.base.CalculatorAdapter`) is its own."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

from ase import Atoms

from ..kpoints import splitting_kpoints_exact
from ..presets import Preset
from ..settings import Settings
from .jobs import Job

#: the presets' upper bound on every SCF-loop key (wien2k_max_iterations, elk_maxscl: le=1000)
MAX_SCF_LOOPS = 1000


class ExecutableProfile(Protocol):
    """The machine side of a code (executables, threads, environment), as far as the shared
    part needs it."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "ExecutableProfile": ...

    def check(self) -> None:
        """Raise a tmdflow error naming what is missing when the code cannot run here."""
        ...


ProfileT = TypeVar("ProfileT", bound=ExecutableProfile)
CalculatorT = TypeVar("CalculatorT", bound="AllElectronCalculator")


class AllElectronCalculator(Generic[ProfileT]):
    """The shared part of an all-electron adapter; the subclass sets ``name``, ``capabilities``,
    ``profile_type``, ``scf_loops_key``, ``case_folder`` and implements the steps."""

    uses_pseudopotentials = False  # all-electron
    #: the machine profile's class (its ``from_settings`` reads the code's settings)
    profile_type: ClassVar[type[ExecutableProfile]]
    #: the preset key bounding the SCF loops, which a retry of an unconverged SCF doubles
    scf_loops_key: ClassVar[str]
    #: the folder below the run's root that holds one case directory per formula
    case_folder: ClassVar[str]

    def __init__(self, profile: ProfileT) -> None:
        self.profile = profile

    @classmethod
    def from_settings(cls: type[CalculatorT], settings: Settings) -> CalculatorT:
        return cls(cls.profile_type.from_settings(settings))

    def check_executables(self, spin_texture: bool = False, projections: bool = False) -> None:
        self.profile.check()

    @staticmethod
    def input_file_digests(formula: str, preset: Preset) -> dict[str, list[str]]:
        return {}  # all-electron: no pseudopotential files in the result's identity

    @staticmethod
    def splitting_kpoints(atoms: Atoms, path_points: int) -> tuple[list, list[str]]:
        """The spin-orbit bands' k list as exact fractions (tmdflow.kpoints.splitting_kpoints_exact)."""
        return splitting_kpoints_exact(path_points)

    @classmethod
    def case_directory(cls, root: Path, formula: str) -> Path:
        """``<root>/<case_folder>/<formula>``: where the SCFs of ``formula`` run."""
        return Path(root) / cls.case_folder / formula

    def job_case_directory(self, job: Job) -> Path:
        """The job's own directory when it names one, else the formula's case directory in its layout."""
        return Path(job.directory) if job.directory else self.case_directory(job.layout.root, job.formula)

    @classmethod
    def scf_retry_changes(cls, preset: Preset) -> dict | None:
        """What a retry of an SCF that did not converge changes: twice the SCF loops
        (``scf_loops_key``), up to MAX_SCF_LOOPS; None when there is no room left."""
        loops = getattr(preset, cls.scf_loops_key)
        more = min(loops * 2, MAX_SCF_LOOPS)
        return {cls.scf_loops_key: more} if more > loops else None
