"""The adapter registry and the protocol every calculator adapter implements."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
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
    #: what it can run: relaxation, scf, bands, orbital_projections, band_map, phonon_forces (each
    #: step declares what it needs; tmdflow.steps.registry.for_calculator derives a code's steps;
    #: a built-in code's are declared in BUILTIN_CALCULATORS)
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

    def relax(self, job: RelaxJob) -> StepResult: ...  # only with the "relaxation" capability

    def bands(self, job: BandsJob) -> StepResult: ...

    def scf_retry_changes(self, preset: Preset) -> dict | None:
        """The preset changes a retry of an SCF that did not converge makes (tmdflow.steps.context.
        run_scf), or None when the code has nothing safer to try."""
        ...

    def bands_directory(self, root: Path, formula: str) -> Path: ...

    def read_spin_orbit_bands(self, directory: Path, labels: tuple[str, ...] = (),
                              step: str | None = None) -> BandData: ...

    def cleanup(self, directory: Path) -> int: ...


@dataclass(frozen=True)
class BuiltinCalculator:
    """A code shipped with tmdflow, as data (like a package's entry point): where its adapter class
    is (``"module:Class"``, imported only when an adapter is built) and what it can run, so that
    names and capabilities are known without importing any adapter."""

    adapter: str  # "package.module:Class"; the class has ``from_settings(settings)``
    capabilities: frozenset[str]

    def load(self) -> Callable[[Settings], CalculatorAdapter]:
        module, _, cls = self.adapter.partition(":")
        return getattr(importlib.import_module(module), cls).from_settings


#: the built-in codes; a third-party code calls :func:`register_calculator` instead
BUILTIN_CALCULATORS: dict[str, BuiltinCalculator] = {
    "espresso": BuiltinCalculator("tmdflow.calculators.espresso.adapter:EspressoCalculator",
                                  frozenset({"relaxation", "scf", "bands", "orbital_projections", "band_map",
                                             "band_model", "phonon_forces"})),
    "wien2k": BuiltinCalculator("tmdflow.calculators.wien2k.adapter:Wien2kCalculator",
                                frozenset({"relaxation", "scf", "bands"})),
    "elk": BuiltinCalculator("tmdflow.calculators.elk.adapter:ElkCalculator",
                             frozenset({"relaxation", "scf", "bands"})),
}

_REGISTERED: dict[str, tuple[Callable[[Settings], CalculatorAdapter], frozenset[str]]] = {}


def register_calculator(name: str, factory: Callable[[Settings], CalculatorAdapter],
                        capabilities: frozenset[str] = frozenset()) -> None:
    """Add a code that is not built in (or replace a built-in one): ``factory(settings)`` builds its
    adapter, ``capabilities`` say what it can run (the steps it supports follow)."""
    _REGISTERED[name] = (factory, frozenset(capabilities))


def registered_calculators() -> list[str]:
    """Every code's name (imports no adapter)."""
    return sorted({*BUILTIN_CALCULATORS, *_REGISTERED})


def _check_known(name: str) -> None:
    if name not in BUILTIN_CALCULATORS and name not in _REGISTERED:
        raise InputError(f"unknown calculator '{name}'", f"choose one of {registered_calculators()}")


def capabilities(name: str) -> frozenset[str]:
    """What ``name`` can run (known without building, or importing, the adapter)."""
    _check_known(name)
    return _REGISTERED[name][1] if name in _REGISTERED else BUILTIN_CALCULATORS[name].capabilities


def get_calculator(name: str, settings: Settings) -> CalculatorAdapter:
    """The adapter of code ``name`` on this machine (a built-in one's module is imported here)."""
    _check_known(name)
    factory = _REGISTERED[name][0] if name in _REGISTERED else BUILTIN_CALCULATORS[name].load()
    return factory(settings)
