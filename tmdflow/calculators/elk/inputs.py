"""Elk input files: elk.in from a tmdflow structure, species files with a chosen muffin-tin radius.

elk.in is written here (not by ASE's ``write_elk_in``, which writes 14 digits and would serve as
well) so that every block tmdflow relies on is explicit and the digits are under our control:
lattice vectors and positions need >= 10 significant digits, or Elk's symmetry finder (tolerance
epslat = 1e-6) loses operations of the ideal prism (21 instead of 10 k-points on 6x6x1).

Species files: Elk 8.4's manual documents no per-species muffin-tin radius in elk.in, so tmdflow
copies Elk's own species file (``<species_dir>/<El>.in``) into the run directory and replaces
the ``rmt`` value on its fifth line (``rminsp, rmt, rmaxsp, nrmt``); everything else (core /
valence split, local orbitals, linearisation energies, radial mesh count) stays Elk's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from ...errors import InputError
from ...units import BOHR_ANGSTROM

SPECIES_RADIUS_MARK = "rminsp, rmt, rmaxsp, nrmt"


def species_with_radius(text: str, rmt_bohr: float, name: str = "species") -> str:
    """Elk species file ``text`` with its muffin-tin radius set to ``rmt_bohr``."""
    if not 0.5 <= rmt_bohr <= 4.0:
        raise InputError(f"muffin-tin radius {rmt_bohr} bohr is outside 0.5-4 bohr", "use e.g. 2.1 (the paper's)")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if SPECIES_RADIUS_MARK in line:
            values, _, comment = line.partition(":")
            parts = values.split()
            if len(parts) != 4:
                break
            parts[1] = f"{rmt_bohr:.4f}"
            lines[i] = f"  {parts[0]}  {parts[1]}  {parts[2]}  {parts[3]}    :{comment}"
            return "\n".join(lines) + "\n"
    raise InputError(f"{name}: no '{SPECIES_RADIUS_MARK}' line with four values (not an Elk species file?)",
                     "point elk_species_dir at Elk's species directory (Debian: /usr/share/elk-lapw/species)")


def species_radius(text: str) -> float:
    """The muffin-tin radius (bohr) a species file holds."""
    for line in text.splitlines():
        if SPECIES_RADIUS_MARK in line:
            return float(line.split(":")[0].split()[1])
    raise InputError("not an Elk species file (no rmt line)", "check the species directory")


def species_texts(elements: list[str], species_dir: Path, rmt_bohr: float) -> dict[str, str]:
    """``<El>.in`` of each element from ``species_dir`` with radius ``rmt_bohr``, as text."""
    out = {}
    for el in elements:
        source = Path(species_dir) / f"{el}.in"
        if not source.is_file():
            raise InputError(f"no Elk species file {source}", "check elk_species_dir (Debian: /usr/share/elk-lapw/species)")
        out[el] = species_with_radius(source.read_text(), rmt_bohr, str(source))
    return out


def write_species(elements: list[str], species_dir: Path, target: Path, rmt_bohr: float) -> dict[str, Path]:
    """Copy ``<El>.in`` for each element from ``species_dir`` into ``target`` with radius ``rmt_bohr``."""
    out = {}
    for el, text in species_texts(elements, species_dir, rmt_bohr).items():
        out[el] = Path(target) / f"{el}.in"
        out[el].write_text(text)
    return out


@dataclass(frozen=True)
class ElkParameters:
    """The elk.in blocks tmdflow writes besides the structure (Elk's units: Hartree, bohr)."""

    tasks: tuple[int, ...]
    ngridk: tuple[int, int, int]
    spinorb: bool
    rgkmax: float
    lmaxapw: int
    gmaxvr: float
    nempty: int
    epspot: float = 1e-6
    epsengy: float = 1e-4
    maxscl: int = 100
    xctype: int = 20  # PBE
    reducek: int = 1  # 1: reduce the k-set with the crystal symmetries, 0: every grid point
    kstlist: tuple[tuple[int, int], ...] = ()  # task 16: (k-point index, state index), 1-based
    extra: tuple[tuple[str, str], ...] = field(default=())  # further blocks, verbatim


def _fmt(x: float) -> str:
    return f"{x:.14f}" if abs(x) < 100 else f"{x:.12f}"


def format_elk_in(atoms: Atoms, p: ElkParameters) -> str:
    """elk.in for ``atoms`` (lattice in bohr, positions in lattice coordinates, species ./El.in)."""
    blocks: list[str] = [
        "! written by tmdflow (calculators/elk)",
        "tasks\n" + "\n".join(f"  {t}" for t in p.tasks),
        f"xctype\n  {p.xctype}",
        f"spinorb\n  {'.true.' if p.spinorb else '.false.'}",
        "ngridk\n  " + " ".join(str(n) for n in p.ngridk),
        f"reducek\n  {p.reducek}",
        f"rgkmax\n  {p.rgkmax:g}",
        f"lmaxapw\n  {p.lmaxapw}",
        f"gmaxvr\n  {p.gmaxvr:g}",
        f"nempty\n  {p.nempty}",
        f"epspot\n  {p.epspot:g}",
        f"epsengy\n  {p.epsengy:g}",
        f"maxscl\n  {p.maxscl}",
        "sppath\n  './'",
    ]
    cell = np.asarray(atoms.cell[:]) / BOHR_ANGSTROM
    blocks.append("avec\n" + "\n".join("  " + "  ".join(_fmt(x) for x in row) for row in cell))
    symbols = atoms.get_chemical_symbols()
    scaled = atoms.get_scaled_positions(wrap=True)
    species = list(dict.fromkeys(symbols))
    lines = [f"  {len(species)}"]
    for el in species:
        idx = [i for i, s in enumerate(symbols) if s == el]
        lines.append(f"  '{el}.in'")
        lines.append(f"  {len(idx)}")
        lines += ["  " + "  ".join(f"{x:.15f}" for x in scaled[i]) for i in idx]
    blocks.append("atoms\n" + "\n".join(lines))
    if p.kstlist:
        blocks.append("kstlist\n" + "\n".join(f"  {ik} {ist}" for ik, ist in p.kstlist))
    for key, value in p.extra:
        blocks.append(f"{key}\n  {value}")
    # a list block (kstlist) ends at a blank line: Elk stops with "End of file" without one
    return "\n\n".join(blocks) + "\n\n"


def read_elk_in_blocks(text: str) -> dict[str, list[str]]:
    """The blocks of an elk.in (name -> value lines), for checks and tests; '!' starts a comment."""
    blocks: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("!")[0].rstrip()
        if not line.strip():
            current = None
            continue
        if current is None and re.fullmatch(r"[A-Za-z0-9_+]+", line.strip()):
            current = line.strip()
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line.strip())
    return blocks
