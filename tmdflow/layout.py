"""The run layout: every directory and file name the shared step flow uses in a material's run.

``<work_dir>/<material key>/`` (tmdflow.identity) holds, for Quantum ESPRESSO,

    <step>/     a step's own directory, named after the step (the relaxation: relax/, and
                relax-<ecut>Ry/ for the raised rungs of the slab stress check; the figures;
                the phonons, one disp-NNN/ per phonopy displacement)
    sr/         the scalar-relativistic SCF and bands (second-variational mode: in soc/)
    soc/        the spin-orbit SCF, its bands runs and their k-point labels

The layout spells no step name: a step passes its own (``ctx.request.step``, or a producer's
from tmdflow.steps.registry) and the layout builds the path from it; inside ``sr/`` and ``soc/``
each run's files are named after its step (``<step>.in``, ``<step>.out``, ``<step>.xml``).
All-electron codes keep their case directories inside the same root (their adapters name them).
Shared by the steps and the calculator adapters (a job carries its RunLayout: tmdflow.calculators.jobs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LABELS_FILE = "bands_labels.txt"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of(cls, run_root: Path, material_key: str) -> "RunLayout":
        return cls(Path(run_root) / material_key)

    def step_directory(self, step: str) -> Path:
        """The directory of step ``step``'s own files: ``<root>/<step>/``."""
        return self.root / step

    @property
    def scalar(self) -> Path:
        return self.root / "sr"

    @property
    def spin_orbit(self) -> Path:
        return self.root / "soc"

    def scalar_scf(self, second_variational: bool) -> Path:
        """Where the scalar-relativistic SCF runs: the second-variational spin-orbit bands read
        its density, so in that mode it runs in the spin-orbit directory."""
        return self.spin_orbit if second_variational else self.scalar

    @staticmethod
    def write_labels(directory: Path, labels) -> None:
        """The k-point labels of a bands run, one a line, beside its outputs."""
        (Path(directory) / LABELS_FILE).write_text("\n".join(labels) + "\n")

    @staticmethod
    def read_labels(directory: Path) -> tuple[str, ...]:
        f = Path(directory) / LABELS_FILE
        return tuple(f.read_text().split("\n")) if f.is_file() else ()
