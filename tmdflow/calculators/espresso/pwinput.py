"""Code side of pw.x: the input text for each tmdflow step.

Steps (docs/physics.md):
  scf_sr    scalar-relativistic SCF (rel=1 files)
  scf_soc   noncollinear spin-orbit SCF (rel=2 files, noncolin=.true., lspinorb=.true.)
  bands     non-self-consistent run on an explicit k list, reading the SCF density of the same
            prefix/outdir; with spin_orbit on a collinear density it is the second-variational mode
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from ase import Atoms

from ...errors import InputError
from ...materials import atomic_mass
from ...presets import Preset

PREFIX = "tmd"
OUTDIR = "./out"


@dataclass(frozen=True)
class PwJob:
    """Everything pw.x needs for one run, independent of file layout."""

    calculation: str  # "scf" | "bands" | "nscf" | relax_calculation(...)
    atoms: Atoms
    preset: Preset
    pseudo_files: Mapping[str, str]  # element -> file name inside pseudo_dir
    pseudo_dir: str
    spin_orbit: bool
    kmesh: tuple[int, int, int] | None = None
    kpoints: Sequence[Sequence[float]] | None = None  # crystal coordinates
    nbnd: int | None = None
    outdir: str = OUTDIR
    prefix: str = PREFIX
    max_seconds: float | None = None
    restart: bool = False  # restart_mode='restart' from a checkpoint (after max_seconds)
    cell_dofree: str | None = None  # vc-relax only: '2Dxy' for monolayers
    stress: bool = True  # tstress for scf/relax (off for phonon supercells: PAW stress is costly)


def relax_calculation(variable_cell: bool) -> str:
    """pw.x's ``calculation`` of a relaxation: ``'vc-relax'`` moves the cell too (with
    ``cell_dofree``), ``'relax'`` only the positions."""
    return "vc-relax" if variable_cell else "relax"


def _unsafe_character(text: str) -> str | None:
    """The first character that would end or break a quoted pw.x namelist string, if any."""
    for ch in text:
        if ch in "'\"" or ord(ch) < 32 or ord(ch) == 127:
            return ch
    return None


def _safe_string(key: str, value: str) -> str:
    """``value`` if pw.x reads it back as the one string it is (no quote, newline or control
    character: a quote would end the string and let the rest rewrite the input)."""
    bad = _unsafe_character(value)
    if bad is not None:
        raise InputError(f"{key} = {value!r} contains {bad!r}, which would break the pw.x input",
                         f"use a {key} without quotes, newlines or control characters"
                         + (" (move the directory, or set the setting to a path without them)"
                            if key.endswith("dir") else ""))
    return value


def _fmt(value, key: str = "value") -> str:
    if isinstance(value, bool):
        return ".true." if value else ".false."
    if isinstance(value, str):
        return f"'{_safe_string(key, value)}'"
    if isinstance(value, float):
        return f"{value:.10g}".replace("e", "d") if abs(value) < 1e-3 else f"{value:.10g}"
    return str(value)


def _namelist(name: str, values: Mapping[str, object]) -> list[str]:
    lines = [f"&{name}"]
    lines += [f"  {k} = {_fmt(v, k)}" for k, v in values.items() if v is not None]
    lines.append("/")
    return lines


def species_order(atoms: Atoms) -> list[str]:
    seen: list[str] = []
    for s in atoms.get_chemical_symbols():
        if s not in seen:
            seen.append(s)
    return seen


def build_pw_input(job: PwJob) -> str:
    p = job.preset
    control = {
        "calculation": job.calculation,
        "prefix": job.prefix,
        "outdir": job.outdir,
        "pseudo_dir": job.pseudo_dir,
        "verbosity": "high",
        "disk_io": "low",
        "tprnfor": job.calculation in ("scf", "relax", "vc-relax") or None,
        "tstress": (job.calculation in ("scf", "relax", "vc-relax") and job.stress) or None,
        "max_seconds": job.max_seconds,
        "restart_mode": "restart" if job.restart else None,
        "forc_conv_thr": float(p.relax_forc_conv_thr) if job.calculation in ("relax", "vc-relax") else None,
        "etot_conv_thr": 1e-5 if job.calculation in ("relax", "vc-relax") else None,
    }
    system = {
        "ibrav": 0,
        "nat": len(job.atoms),
        "ntyp": len(species_order(job.atoms)),
        "ecutwfc": float(p.ecutwfc),
        "ecutrho": float(p.ecutrho),
        "occupations": p.occupations,
        "smearing": p.smearing if p.occupations == "smearing" else None,
        "degauss": float(p.degauss) if p.occupations == "smearing" else None,
        "nbnd": job.nbnd,
        "noncolin": True if job.spin_orbit else None,
        "lspinorb": True if job.spin_orbit else None,
    }
    electrons = {
        "conv_thr": float(p.conv_thr),
        "mixing_beta": float(p.mixing_beta),
        "mixing_mode": p.mixing_mode,
        "electron_maxstep": int(p.electron_maxstep),
        "diago_full_acc": True if job.calculation != "scf" else None,
        # without it pw.x derives the non-SCF threshold from conv_thr (0.1 conv_thr / N_el), far
        # tighter than meV band energies need at tight conv_thr (bench/nscf_threshold.py)
        "diago_thr_init": float(p.nscf_diago_thr) if job.calculation in ("bands", "nscf") else None,
        "diago_david_ndim": int(p.diago_david_ndim),
    }
    lines = _namelist("CONTROL", control) + _namelist("SYSTEM", system) + _namelist("ELECTRONS", electrons)
    if job.calculation in ("relax", "vc-relax"):
        lines += _namelist("IONS", {"ion_dynamics": "bfgs"})
    if job.calculation == "vc-relax":
        lines += _namelist("CELL", {"cell_dynamics": "bfgs", "cell_dofree": job.cell_dofree or "all",
                                    "press_conv_thr": float(p.relax_press_conv_thr)})
    lines.append("ATOMIC_SPECIES")
    for el in species_order(job.atoms):
        name = _safe_string(f"pseudopotential file of {el}", str(job.pseudo_files[el]))
        if not name or any(ch.isspace() for ch in name):
            raise InputError(f"pseudopotential file name {name!r} of {el} is empty or contains spaces "
                             "(pw.x reads ATOMIC_SPECIES by whitespace)", "rename the UPF file without spaces")
        lines.append(f"  {el} {atomic_mass(el):.4f} {name}")
    lines.append("CELL_PARAMETERS angstrom")
    for vec in job.atoms.cell[:]:
        lines.append("  " + "  ".join(f"{x:16.10f}" for x in vec))
    lines.append("ATOMIC_POSITIONS crystal")
    for sym, pos in zip(job.atoms.get_chemical_symbols(), job.atoms.get_scaled_positions(wrap=False)):
        lines.append(f"  {sym:2s} " + "  ".join(f"{x:16.10f}" for x in pos))
    if job.kpoints is not None:
        kpts = np.asarray(job.kpoints, float)
        lines.append("K_POINTS crystal")
        lines.append(f"  {len(kpts)}")
        lines += [f"  {k[0]:14.10f} {k[1]:14.10f} {k[2]:14.10f} 1.0" for k in kpts]
    else:
        n1, n2, n3 = job.kmesh or (1, 1, 1)
        lines.append("K_POINTS automatic")
        lines.append(f"  {n1} {n2} {n3} 0 0 0")
    return "\n".join(lines) + "\n"


def link_pseudopotentials(directory: Path, files: Mapping[str, Path]) -> dict[str, str]:
    """Symlink the chosen UPF files into ``directory/pseudo``; returns element -> file name."""
    pdir = directory / "pseudo"
    pdir.mkdir(parents=True, exist_ok=True)
    names = {}
    for element, path in files.items():
        link = pdir / Path(path).name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(path).resolve())
        names[element] = link.name
    return names
