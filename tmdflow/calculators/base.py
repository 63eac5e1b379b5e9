"""The adapter registry and the protocol every calculator adapter implements."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

from ase import Atoms

from ..bands import BandData
from ..errors import InputError
from ..presets import Preset
from ..settings import Settings
from .jobs import BandsJob, RelaxJob, ScfJob, StepResult


class CalculatorAdapter(Protocol):
    """What the shared flow asks of every code (Quantum ESPRESSO, WIEN2k, Elk): no step asks
    which code it talks to.

    The steps (:mod:`tmdflow.steps`) hand typed jobs (:mod:`tmdflow.calculators.jobs`) to
    ``scf`` / ``relax`` / ``bands`` and get a :class:`~tmdflow.calculators.jobs.StepResult`
    back; the adapter decides everything code-specific (pseudopotentials or basis, directories
    inside the job's layout, named after ``job.step``; post-processing).  The analysis needs
    only ``bands_directory`` and ``read_spin_orbit_bands``, which return code-independent
    :class:`tmdflow.bands.BandData`.  Steps needing more (orbital weights, a band map, phonon
    forces) declare the capability and call that adapter's methods for it.
    """

    name: str
    uses_pseudopotentials: bool  # descriptive (reports); no shared code branches on it
    #: what it can run: relax, scf, bands, orbital_projections, band_map, phonon_forces (each step
    #: declares what it needs; tmdflow.steps.registry.for_calculator derives a code's steps)
    capabilities: frozenset[str]

    def check_executables(self, spin_texture: bool = False, projections: bool = False) -> None: ...

    def input_file_digests(self, formula: str, preset: Preset) -> dict[str, list[str]]:
        """SHA-256 of the files that decide the result's numbers, by element (pseudopotentials;
        {} for an all-electron code): part of the result hash (tmdflow.identity)."""
        ...

    def splitting_kpoints(self, atoms: Atoms, path_points: int) -> tuple[Sequence, list[str]]:
        """The spin-orbit bands' k list (Gamma, K, K', M, Q [+ path]) in the form the code takes."""
        ...

    def scf(self, job: ScfJob) -> StepResult: ...

    def relax(self, job: RelaxJob) -> StepResult: ...  # only with the "relax" capability

    def bands(self, job: BandsJob) -> StepResult: ...

    def scf_retry_changes(self, preset: Preset) -> dict | None:
        """The preset changes a retry of an SCF that did not converge makes (tmdflow.steps.context.
        run_scf), or None when the code has nothing safer to try."""
        ...

    def bands_directory(self, root: Path, formula: str) -> Path: ...

    def read_spin_orbit_bands(self, directory: Path, labels: tuple[str, ...] = (),
                              step: str | None = None) -> BandData: ...

    def cleanup(self, directory: Path) -> int: ...


_REGISTRY: dict[str, Callable[[Settings], CalculatorAdapter]] = {}
_CAPABILITIES: dict[str, frozenset[str]] = {}


def register_calculator(name: str, factory: Callable[[Settings], CalculatorAdapter],
                        capabilities: frozenset[str] = frozenset()) -> None:
    _REGISTRY[name] = factory
    _CAPABILITIES[name] = frozenset(capabilities)


def capabilities(name: str) -> frozenset[str]:
    """What ``name`` can run (known without building the adapter)."""
    _load_builtin()
    if name not in _REGISTRY:
        raise InputError(f"unknown calculator '{name}'", f"choose one of {sorted(_REGISTRY)}")
    return _CAPABILITIES[name]


def registered_calculators() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_calculator(name: str, settings: Settings) -> CalculatorAdapter:
    _load_builtin()
    if name not in _REGISTRY:
        raise InputError(f"unknown calculator '{name}'", f"choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name](settings)


def _load_builtin() -> None:
    if "espresso" not in _REGISTRY:
        from .espresso.adapter import EspressoCalculator

        register_calculator("espresso", EspressoCalculator.from_settings, EspressoCalculator.capabilities)
    if "wien2k" not in _REGISTRY:
        from .wien2k.adapter import Wien2kCalculator

        register_calculator("wien2k", Wien2kCalculator.from_settings, Wien2kCalculator.capabilities)
    if "elk" not in _REGISTRY:
        from .elk.adapter import ElkCalculator

        register_calculator("elk", ElkCalculator.from_settings, ElkCalculator.capabilities)
