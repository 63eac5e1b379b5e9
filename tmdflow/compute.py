"""One material, end to end: structure -> pseudopotentials -> SCF -> bands -> spin texture -> Delta.

This is the single-machine pipeline behind ``tmdflow compute`` and ``make run``.  All input
checks (formula, geometry, preset, executables, pseudopotential kind) happen before pw.x runs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .analysis.splitting import SplittingResult, analyze_bands
from .bands import BandData
from .calculators.espresso.adapter import EspressoCalculator, valence_electrons
from .errors import InputError, PseudopotentialError
from .kpoints import GAMMA, K_POINT, M_POINT, monkhorst_pack_2d, path_gmkg
from .materials import Material, get_material
from .presets import Preset
from .pseudo import PseudoSet, ensure_pseudopotentials, user_pseudopotentials
from .pseudo.recipes import REL_FULL
from .settings import Settings
from .structures import build_monolayer

ProgressFn = Callable[[str], None]

#: Q (Lambda) valley: midway Gamma-K, where the competing conduction minimum of MX2 sits
Q_POINT = np.array([1 / 6, 1 / 6, 0.0])


@dataclass(frozen=True)
class StepSummary:
    step: str
    wall_seconds: float
    converged: bool | None
    n_scf_steps: int | None
    qe_version: str


@dataclass(frozen=True)
class ComputeResult:
    formula: str
    dimensionality: str
    preset: str
    spin_orbit_mode: str
    a: float
    d: float
    vacuum: float
    kmesh: tuple[int, int, int]
    splitting: SplittingResult
    total_energy_ev: float | None
    steps: tuple[StepSummary, ...]
    pseudopotentials: dict = field(default_factory=dict)
    directory: str = ""
    scratch_freed_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def splitting_kpoints(cell: np.ndarray, path_points: int) -> tuple[np.ndarray, list[str]]:
    """Gamma, K, K', M, Q always; plus a Gamma-M-K-Gamma path when path_points > 0."""
    kpts = [GAMMA, K_POINT, -K_POINT, M_POINT, Q_POINT]
    labels = ["G", "K", "K'", "M", "Q"]
    if path_points:
        path, plabels = path_gmkg(cell, path_points)
        kpts += list(path)
        labels += plabels
    return np.array(kpts), labels


def resolve_geometry(material: Material, a: float | None, d: float | None) -> tuple[float, float]:
    if (a is None or d is None) and material.monolayer is None:
        raise InputError(
            f"no monolayer lattice parameters for {material.formula} in inputs/materials.yaml",
            "give them explicitly (--a and --d, Angstrom) or add the material to inputs/materials.yaml",
        )
    return (a if a is not None else material.monolayer.a, d if d is not None else material.monolayer.d)


def select_pseudopotentials(material: Material, preset: Preset, settings: Settings, progress=None,
                            rels: tuple[int, ...] = (REL_FULL,)) -> PseudoSet:
    """The preset's family (or the user's directory) for ``material``; rel=2 files by default."""
    if settings.user_pseudo_dir:
        return user_pseudopotentials(settings.user_pseudo_dir, material.elements, spin_orbit=REL_FULL in rels)
    return ensure_pseudopotentials(
        material.elements, preset.pseudo_family, settings.pseudo_dir, rels=rels,
        ld1_command=settings.ld1_command, progress=progress,
    )


def compute_material(
    formula: str,
    preset: Preset,
    settings: Settings,
    a: float | None = None,
    d: float | None = None,
    vacuum: float | None = None,
    directory: Path | None = None,
    progress: ProgressFn | None = None,
) -> ComputeResult:
    say = progress or (lambda msg: None)
    material = get_material(formula)
    a, d = resolve_geometry(material, a, d)
    vacuum = preset.vacuum if vacuum is None else vacuum
    atoms = build_monolayer(material.formula, a, d, vacuum)
    calc = EspressoCalculator.from_settings(settings)
    calc.check_executables(preset.spin_texture)
    pseudos = select_pseudopotentials(material, preset, settings, progress=say)
    second_variational = preset.spin_orbit_mode == "second_variational"
    if second_variational and not pseudos.is_norm_conserving:
        raise InputError(
            f"spin_orbit_mode 'second_variational' needs norm-conserving pseudopotentials; "
            f"'{pseudos.family}' is not (pw.x 6.7 stops in read_scf, 'Reading PAW becsum', when a "
            "spin-orbit bands run reads a collinear PAW density)",
            "set pseudo_family: pslibrary-nc (and ecutwfc >= 70 Ry), or use spin_orbit_mode: scf",
        )
    # spin-orbit steps use the fully relativistic files; in the second-variational mode the SCF
    # uses the same files, which pw.x averages to scalar-relativistic (norm-conserving only)
    files = {el: pseudos.for_element(el, spin_orbit=True).path for el in material.elements}
    directory = Path(directory or settings.work_dir / f"{material.formula}-monolayer-{preset.name}")
    directory.mkdir(parents=True, exist_ok=True)
    tag = lambda m: say(f"{material.formula}: {m}")  # noqa: E731

    kmesh = monkhorst_pack_2d(preset.kmesh)
    scf = calc.scf(atoms, preset, directory, files, spin_orbit=not second_variational, kmesh=kmesh, progress=tag)
    kpts, labels = splitting_kpoints(atoms.cell[:], preset.path_points)
    nelec = valence_electrons(atoms, files)
    nbnd = int(round(nelec)) + 2 * preset.extra_bands
    bands = calc.bands(atoms, preset, directory, files, spin_orbit=True, kpoints=kpts, nbnd=nbnd, progress=tag)
    band_data: BandData = bands.xml.bands
    band_data = BandData(band_data.kpoints_crystal, band_data.eigenvalues, band_data.n_electrons,
                         band_data.spinor, band_data.reciprocal_cell, labels=tuple(labels))
    if preset.spin_texture:
        sz = calc.spin_texture(directory, bands, progress=tag)
        band_data = band_data.with_sigma_z(sz)
    splitting = analyze_bands(band_data)
    freed = calc.cleanup(directory)
    steps = tuple(
        StepSummary(r.step, r.run.wall_seconds, r.xml.converged, r.xml.n_scf_steps, r.xml.qe_version)
        for r in (scf, bands)
    )
    pp = {
        el: {"file": pf.path.name, "sha256": pf.sha256, "source": pf.source}
        for el, pf in pseudos.full.items()
    }
    return ComputeResult(
        formula=material.formula,
        dimensionality="monolayer",
        preset=preset.name,
        spin_orbit_mode=preset.spin_orbit_mode,
        a=a, d=d, vacuum=vacuum, kmesh=kmesh,
        splitting=splitting,
        total_energy_ev=scf.xml.total_energy_ev,
        steps=steps,
        pseudopotentials=pp,
        directory=str(directory),
        scratch_freed_bytes=freed,
    )
