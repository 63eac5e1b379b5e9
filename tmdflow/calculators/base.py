"""The adapter registry and the protocol every calculator adapter implements."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from ase import Atoms

from ..errors import InputError
from ..presets import Preset
from ..settings import Settings


class CalculatorAdapter(Protocol):
    """What the pipeline asks of every code (Quantum ESPRESSO, WIEN2k).

    The step functions (:mod:`tmdflow.steps`) call scf / relax / bands with code-specific
    extras (pseudopotential files for plane-wave codes, none for all-electron ones:
    ``uses_pseudopotentials``); the analysis needs only ``bands_directory`` and
    ``read_spin_orbit_bands``, which return code-independent :class:`tmdflow.bands.BandData`.
    """

    name: str
    uses_pseudopotentials: bool
    #: what it can run: relax, scf, bands, orbital_projections, band_map, phonon_forces (each step
    #: declares what it needs; tmdflow.steps.registry.for_calculator derives a code's steps)
    capabilities: frozenset[str]

    def check_executables(self, spin_texture: bool = False) -> None: ...

    def bands_directory(self, root: Path, formula: str) -> Path: ...

    def read_spin_orbit_bands(self, directory: Path, labels: tuple[str, ...] = ()): ...

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
