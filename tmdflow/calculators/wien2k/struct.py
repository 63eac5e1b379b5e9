"""``case.struct``: write from an ASE structure with WIEN2k's multiplicities, read back.

Format (WIEN2k user guide, "case.struct"; Fortran formats of the reading programs):
  title                                               A80
  lattice type, "LATTICE,NONEQUIV.ATOMS:", n, group   A4,23X,I3 (then free text: space group)
  "MODE OF CALC=RELA unit=bohr"                       13X,A4
  a b c alpha beta gamma (bohr, degrees)              6F10.6
  per inequivalent atom:
    "ATOM" index ": X=" x " Y=" y " Z=" z            A4,I4,4X,F10.8,3X,F10.8,3X,F10.8
    "MULT=" m "ISPLIT=" s                             15X,I2,17X,I2
    m-1 further positions                             4X,I4,4X,F10.8,3X,F10.8,3X,F10.8
    name "NPT=" npt "R0=" r0 "RMT=" rmt "Z:" Z        A10,5X,I5,5X,F10.8,5X,F10.5,5X,F10.5
    "LOCAL ROT MATRIX:" 3 rows                        20X,3F10.7
  number of symmetry operations (+ operations)        I4 ...

ASE's writer gives every atom MULT=1 and fixed radii; WIEN2k needs the crystallographic
multiplicities (one block per inequivalent site, all its equivalent positions inside), which
come from spglib here.  The symmetry operations are left to WIEN2k (``0`` operations: sgroup /
symmetry in ``init_lapw`` fill them in).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from ...errors import InputError, OutputParseError
from ...units import BOHR_ANGSTROM as ANGSTROM_PER_BOHR

NPT = 781  # radial mesh points (WIEN2k default)


def default_r0(z: int) -> float:
    """First radial mesh point: WIEN2k's structure generator uses 1e-4 bohr for light atoms and
    5e-5 bohr from Z = 37 on (heavier nuclei need a finer start)."""
    return 0.0001 if z <= 36 else 0.00005


@dataclass(frozen=True)
class StructSite:
    """One inequivalent atom with all its equivalent positions (fractional)."""

    name: str
    z: float
    rmt: float  # bohr
    positions: tuple[tuple[float, float, float], ...]
    npt: int = NPT
    r0: float = 0.0001
    isplit: int = 8
    rotation: tuple[tuple[float, ...], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    @property
    def multiplicity(self) -> int:
        return len(self.positions)

    @property
    def symbol(self) -> str:
        return chemical_symbols[int(round(self.z))]


@dataclass(frozen=True)
class Wien2kStruct:
    title: str
    lattice: str  # 'H' hexagonal, 'P' primitive, ...
    a_bohr: float
    b_bohr: float
    c_bohr: float
    alpha: float
    beta: float
    gamma: float
    sites: tuple[StructSite, ...]
    spacegroup: str = ""  # as written by sgroup, e.g. '187_P-6m2' ('' when not given)
    n_symmetry_operations: int = 0
    extra: str = field(default="", compare=False)  # symmetry operations block, kept verbatim

    @property
    def n_inequivalent(self) -> int:
        return len(self.sites)

    def to_atoms(self) -> Atoms:
        """The structure in tmdflow's hexagonal convention (a1 along x, gamma = 120 deg)."""
        if self.lattice != "H":
            raise InputError(f"lattice type '{self.lattice}' is not hexagonal", "tmdflow builds 'H' cells only")
        a = self.a_bohr * ANGSTROM_PER_BOHR
        c = self.c_bohr * ANGSTROM_PER_BOHR
        cell = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]])
        symbols, frac = [], []
        for site in self.sites:
            for p in site.positions:
                symbols.append(site.symbol)
                frac.append(p)
        return Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True)


def _equivalent_groups(atoms: Atoms, symprec: float = 1e-4) -> list[list[int]]:
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = spglib.get_symmetry_dataset(cell, symprec=symprec)
    eq = ds.equivalent_atoms if hasattr(ds, "equivalent_atoms") else ds["equivalent_atoms"]
    groups: dict[int, list[int]] = {}
    for i, rep in enumerate(eq):
        groups.setdefault(int(rep), []).append(i)
    return [groups[k] for k in sorted(groups)]


def struct_from_atoms(atoms: Atoms, rmt: float | dict[str, float], title: str) -> Wien2kStruct:
    """Inequivalent sites with their multiplicities; ``rmt`` in bohr (one value or per element)."""
    cellpar = atoms.cell.cellpar()
    if not (abs(cellpar[3] - 90) < 1e-6 and abs(cellpar[4] - 90) < 1e-6 and abs(cellpar[5] - 120) < 1e-6):
        raise InputError(f"cell angles {cellpar[3:]} are not hexagonal (90, 90, 120)",
                         "build the cell with tmdflow.structures")
    frac = atoms.get_scaled_positions(wrap=True)
    frac[np.abs(frac - 1.0) < 1e-10] = 0.0
    sites = []
    counts: dict[str, int] = {}
    for group in _equivalent_groups(atoms):
        sym = atoms[group[0]].symbol
        counts[sym] = counts.get(sym, 0) + 1
        z = atomic_numbers[sym]
        r = rmt[sym] if isinstance(rmt, dict) else rmt
        sites.append(StructSite(
            name=f"{sym}{counts[sym]}", z=float(z), rmt=float(r),
            positions=tuple(tuple(float(x) for x in frac[i]) for i in group), r0=default_r0(z)))
    a, b, c = (cellpar[:3] / ANGSTROM_PER_BOHR)
    return Wien2kStruct(title=title, lattice="H", a_bohr=float(a), b_bohr=float(b), c_bohr=float(c),
                        alpha=90.0, beta=90.0, gamma=120.0, sites=tuple(sites))


def _pos(x: float) -> str:
    return f"{x:10.8f}"


def format_struct(s: Wien2kStruct) -> str:
    lines = [s.title[:80],
             f"{s.lattice:<4}LATTICE,NONEQUIV.ATOMS:{s.n_inequivalent:3d}" + (f" {s.spacegroup}" if s.spacegroup else ""),
             "MODE OF CALC=RELA unit=bohr",
             "".join(f"{v:10.6f}" for v in (s.a_bohr, s.b_bohr, s.c_bohr, s.alpha, s.beta, s.gamma))]
    for i, site in enumerate(s.sites, start=1):
        x, y, z = site.positions[0]
        lines.append(f"ATOM{-i:4d}: X={_pos(x)} Y={_pos(y)} Z={_pos(z)}")
        lines.append(f"          MULT={site.multiplicity:2d}          ISPLIT={site.isplit:2d}")
        for x, y, z in site.positions[1:]:
            lines.append(f"    {-i:4d}: X={_pos(x)} Y={_pos(y)} Z={_pos(z)}")
        lines.append(f"{site.name:<10}{' NPT='}{site.npt:5d}{'  R0='}{site.r0:10.8f}{' RMT='}{site.rmt:10.5f}"
                     f"{'   Z:'}{site.z:10.5f}")
        for j, row in enumerate(site.rotation):
            head = "LOCAL ROT MATRIX:   " if j == 0 else " " * 20
            lines.append(head + "".join(f"{v:10.7f}" for v in row))
    if s.extra:
        lines.append(s.extra.rstrip("\n"))
    else:
        lines.append(f"{s.n_symmetry_operations:4d}      NUMBER OF SYMMETRY OPERATIONS")
    return "\n".join(lines) + "\n"


def _fixed_floats(line: str, starts: tuple[int, ...], width: int = 10) -> list[float]:
    return [float(line[p:p + width]) for p in starts]


def parse_struct(text: str) -> Wien2kStruct:
    """Read a ``case.struct`` (as written by tmdflow or by WIEN2k's own programs)."""
    lines = text.splitlines()
    try:
        title = lines[0].rstrip()
        lattice = lines[1][:4].strip()
        nat = int(lines[1][27:30])
        spacegroup = lines[1][30:].strip()
        if not lines[2][13:17].strip():
            raise ValueError("mode line")
        a, b, c, al, be, ga = (float(lines[3][i:i + 10]) for i in range(0, 60, 10))
        i = 4
        sites = []
        for _ in range(nat):
            positions = [tuple(_fixed_floats(lines[i], (12, 25, 38)))]
            mult = int(lines[i + 1][15:17])
            isplit = int(lines[i + 1][34:36])
            i += 2
            for _ in range(mult - 1):
                positions.append(tuple(_fixed_floats(lines[i], (12, 25, 38))))
                i += 1
            ln = lines[i]
            name = ln[:10].strip()
            npt = int(ln[15:20])
            r0 = float(ln[25:35])
            rmt = float(ln[40:50])
            z = float(ln[55:65])
            rot = tuple(tuple(float(lines[i + 1 + k][20 + 10 * j:30 + 10 * j]) for j in range(3)) for k in range(3))
            i += 4
            sites.append(StructSite(name, z, rmt, tuple(positions), npt, r0, isplit, rot))
        nsym = int(lines[i][:4]) if i < len(lines) and lines[i][:4].strip() else 0
        extra = "\n".join(lines[i:]) + "\n" if i < len(lines) else ""
    except (IndexError, ValueError) as exc:
        raise OutputParseError(f"not a WIEN2k case.struct ({exc})", "check the file (format: WIEN2k user guide)") from None
    return Wien2kStruct(title, lattice, a, b, c, al, be, ga, tuple(sites), spacegroup, nsym, extra)
