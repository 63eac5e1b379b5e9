"""The adapter registry and the protocol every calculator adapter implements."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from ase import Atoms

from ..errors import InputError
from ..presets import Preset
from ..settings import Settings


class CalculatorAdapter(Protocol):
    """What the pipeline asks of a code (Quantum ESPRESSO now, WIEN2k later)."""

    name: str

    def scf(self, atoms: Atoms, preset: Preset, directory: Path, spin_orbit: bool): ...

    def bands(self, atoms: Atoms, preset: Preset, directory: Path, spin_orbit: bool,
              kpoints, labels): ...


_REGISTRY: dict[str, Callable[[Settings], CalculatorAdapter]] = {}


def register_calculator(name: str, factory: Callable[[Settings], CalculatorAdapter]) -> None:
    _REGISTRY[name] = factory


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

        register_calculator("espresso", EspressoCalculator.from_settings)
