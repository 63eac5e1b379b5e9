"""What every calculator adapter records of the programs it ran (shared, code-independent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ase import Atoms

from .jobs import InputFileRef

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class RunRecord:
    """What happened when a program ran: for provenance and timing."""

    program: str
    argv: tuple[str, ...]
    directory: Path
    returncode: int
    wall_seconds: float


@dataclass
class AllElectronStepResult:
    """One step of an all-electron code (WIEN2k, Elk): the programs it ran and what the adapter
    adds to the task's outputs (``extra``); each adapter's subclass adds its parsed results and
    ``outputs()``.  A :class:`tmdflow.calculators.jobs.StepResult`: no pseudopotentials."""

    step: str
    directory: Path
    input_text: str
    code_version: str
    runs: list[RunRecord] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    relaxed_atoms: Atoms | None = None
    corrections: list = field(default_factory=list)
    input_kind = "commands_and_files"  # the task's inputs key (commands run and files written)

    def input_files(self) -> dict[str, InputFileRef]:
        return {}  # all-electron: no pseudopotential files

    @property
    def wall_seconds(self) -> float:
        return float(sum(r.wall_seconds for r in self.runs))
