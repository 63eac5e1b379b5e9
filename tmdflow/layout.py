"""The run layout: every directory and file name the shared step flow uses in a material's run.

``<work_dir>/<material key>/`` (tmdflow.identity) holds, for Quantum ESPRESSO,

    relax/      the relaxation (and relax.<n>-<ecut>Ry/ for the rungs of the slab stress check)
    sr/         the scalar-relativistic SCF and bands (second-variational mode: in soc/)
    soc/        the spin-orbit SCF, its bands runs and their k-point labels
    figures/    the physics checks' figures (PNG, SVG, CSV)
    phonons/    one disp-NNN/ per phonopy displacement

All-electron codes keep their case directories inside the same root (their adapters name them).
Shared by the steps and the calculator adapters (a job carries its RunLayout: tmdflow.calculators.jobs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LABELS_FILE = "bands_labels.txt"
#: file stems of the Quantum ESPRESSO runs the figures are drawn from (<stem>.xml, <stem>.out)
SCF_STEM = {False: "scf_sr", True: "scf_soc"}  # by spin_orbit
SCALAR_BANDS_STEM = "bands_sr"
BAND_MAP_STEM = "soc_map"
BAND_MAP_SIGMA = "soc_map_sigma.dat"  # bands.x <sigma_z> of the band map
ORBITAL_PROJECTIONS = "proj.projwfc_up"  # projwfc.x of the scalar-relativistic bands


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of(cls, run_root: Path, material_key: str) -> "RunLayout":
        return cls(Path(run_root) / material_key)

    @property
    def relax(self) -> Path:
        return self.root / "relax"

    @property
    def scalar(self) -> Path:
        return self.root / "sr"

    @property
    def spin_orbit(self) -> Path:
        return self.root / "soc"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def phonons(self) -> Path:
        return self.root / "phonons"

    def scalar_scf(self, second_variational: bool) -> Path:
        """Where the scalar-relativistic SCF runs: the second-variational spin-orbit bands read
        its density, so in that mode it runs in the spin-orbit directory."""
        return self.spin_orbit if second_variational else self.scalar

    def scf_xml(self, spin_orbit: bool, second_variational: bool = False) -> Path:
        """The XML of the SCF whose density a bands run in that directory reuses."""
        directory = self.spin_orbit if spin_orbit else self.scalar_scf(second_variational)
        return directory / f"{SCF_STEM[spin_orbit]}.xml"

    @staticmethod
    def write_labels(directory: Path, labels) -> None:
        """The k-point labels of a bands run, one a line, beside its outputs."""
        (Path(directory) / LABELS_FILE).write_text("\n".join(labels) + "\n")

    @staticmethod
    def read_labels(directory: Path) -> tuple[str, ...]:
        f = Path(directory) / LABELS_FILE
        return tuple(f.read_text().split("\n")) if f.is_file() else ()
