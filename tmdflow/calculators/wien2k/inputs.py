"""WIEN2k input files tmdflow writes or edits (besides case.struct, see :mod:`.struct`).

``init_lapw`` writes case.in0/in1/in2/inm/inc from the structure (lstart decides the semicore
local orbitals); tmdflow then *edits* case.in1 (basis size, energy window) and writes the
spin-orbit input case.inso itself instead of driving the interactive ``initso_lapw``.
Formats: WIEN2k user guide, sections on lapw1 (case.in1), lapw2 (case.in2), lapwso
(case.inso), kgen/klist and k-point parallelisation (.machines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from math import lcm

from ...errors import InputError, OutputParseError


# -- case.in1 -----------------------------------------------------------------------------
@dataclass(frozen=True)
class In1Atom:
    global_energy: float
    exceptions: tuple[tuple[int, float, float, str, int], ...]  # l, E, dE, CONT|STOP, APW(0)/LAPW(1)


def parse_in1(text: str) -> tuple[list[str], list[In1Atom]]:
    """Lines and per-atom energy parameters of case.in1 / case.in1c."""
    lines = text.splitlines()
    atoms = []
    i = 2
    try:
        while i < len(lines) and not lines[i].startswith("K-VECTORS"):
            parts = lines[i].split()
            e_global, n = float(parts[0]), int(parts[1])
            exc = []
            for row in lines[i + 1:i + 1 + n]:
                p = row.split()
                exc.append((int(p[0]), float(p[1]), float(p[2]), p[3], int(p[4]) if len(p) > 4 else 1))
            atoms.append(In1Atom(e_global, tuple(exc)))
            i += 1 + n
    except (IndexError, ValueError):
        raise OutputParseError(f"case.in1 line {i + 1} is not an energy-parameter block: {lines[i]!r}",
                               "regenerate case.in1 with init_lapw") from None
    if i >= len(lines):
        raise OutputParseError("case.in1 has no 'K-VECTORS FROM UNIT' line", "regenerate it with init_lapw")
    return lines, atoms


def edit_in1(text: str, rkmax: float, lmax: int, emax_above_ef: float | None = None) -> str:
    """Set R_mt*K_max and l_max (line 2) and, optionally, the upper end of the energy window
    (last line: ``K-VECTORS FROM UNIT:4  emin  de  nband``, emax = E_F + de)."""
    lines, _ = parse_in1(text)
    m = re.match(r"\s*(\S+)\s+(\S+)\s+(\S+)(.*)", lines[1])
    if not m:
        raise OutputParseError(f"case.in1 line 2 is not 'RKMAX LMAX LNSMAX': {lines[1]!r}", "regenerate it")
    lines[1] = f"{rkmax:6.2f}{lmax:9d}{int(m.group(3)):5d}{m.group(4)}"
    if emax_above_ef is not None:
        k = next(i for i, l in enumerate(lines) if l.startswith("K-VECTORS"))
        p = lines[k][20:].split()  # unit, emin, de, nband, comment
        if len(p) < 4:
            raise OutputParseError(f"case.in1: cannot read the energy window in {lines[k]!r}", "regenerate it")
        rest = " ".join(p[4:])
        lines[k] = f"K-VECTORS FROM UNIT:{p[0]}{float(p[1]):7.1f}{emax_above_ef:10.1f}{int(p[3]):5d}   {rest}".rstrip()
    return "\n".join(lines) + "\n"


def in1_basis(text: str) -> tuple[float, int, float]:
    """(R_mt*K_max, l_max, de of the energy window) as the file states them."""
    lines, _ = parse_in1(text)
    p = lines[1].split()
    k = next(l for l in lines if l.startswith("K-VECTORS"))
    return float(p[0]), int(p[1]), float(k[20:].split()[2])


# -- case.inso ----------------------------------------------------------------------------
INSO_LLMAX = 4  # l_max of the spin-orbit Hamiltonian (WIEN2k default)
INSO_WINDOW_RY = (-10.0, 1.5)  # second-variational basis window, Ry (WIEN2k default)


def format_inso(rlo_atoms: dict[int, float], direction: tuple[int, int, int] = (0, 0, 1)) -> str:
    """case.inso for a non-magnetic spin-orbit run.

    rlo_atoms: inequivalent-atom index (1-based) -> energy (Ry) of the relativistic p1/2 local
    orbital added for it (the semicore p energy of case.in1 for the transition metal).
    direction: the (irrelevant without magnetisation) quantisation axis, lattice units: c.
    """
    lines = ["WFFIL",
             f"{INSO_LLMAX:2d}{1:3d}{0:3d}                      llmax, ipr, kpot",
             f"{INSO_WINDOW_RY[0]:9.4f}{INSO_WINDOW_RY[1]:10.5f}          emin, emax (output energy window)",
             f"{direction[0]:4d}.{direction[1]:3d}.{direction[2]:3d}.                 "
             "direction of magnetization (lattice vectors)",
             f"{len(rlo_atoms):2d}                           number of atoms for which RLO is added"]
    for atom, energy in sorted(rlo_atoms.items()):
        lines.append(f"{atom:2d}{energy:9.4f}{0.0010:11.4f}          atom number, e-lo, de (case.in1)")
    lines.append(" 0 0 0 0 0                   number of atoms for which SO is switched off; atoms")
    return "\n".join(lines) + "\n"


def rlo_energies(in1_text: str, atom_indices: list[int]) -> dict[int, float]:
    """The p1/2 local-orbital energy per atom: the lowest l = 1 energy of case.in1 (the semicore
    p state that lstart gave a local orbital), else the atom's global energy parameter."""
    _, atoms = parse_in1(in1_text)
    out = {}
    for idx in atom_indices:
        a = atoms[idx - 1]
        p = [e for (l, e, _de, _sw, _apw) in a.exceptions if l == 1]
        out[idx] = min(p) if p else a.global_energy
    return out


# -- case.klist_band ----------------------------------------------------------------------
def format_klist_band(kpoints: list[tuple[Fraction, Fraction, Fraction]], labels: list[str]) -> str:
    """``A10,4I10,F5.1`` per point (name, integer coordinates, common divisor, weight), then END.

    Coordinates are in units of the reciprocal lattice vectors (P and H lattices), given as
    exact fractions so that K = (1/3, 1/3, 0) is exact.
    """
    if len(kpoints) != len(labels):
        raise InputError("k-points and labels differ in number", "internal error; report it")
    div = 1
    for k in kpoints:
        for x in k:
            div = lcm(div, Fraction(x).denominator)
    lines = []
    for k, name in zip(kpoints, labels):
        ints = [int(Fraction(x) * div) for x in k]
        lines.append(f"{name[:10]:<10}{ints[0]:10d}{ints[1]:10d}{ints[2]:10d}{div:10d}{1.0:5.1f}")
    lines.append("END")
    return "\n".join(lines) + "\n"


def parse_klist_band(text: str) -> tuple[list[tuple[float, float, float]], list[str]]:
    pts, names = [], []
    for line in text.splitlines():
        if line.startswith("END"):
            break
        name = line[:10].strip()
        ix, iy, iz, div = (int(line[10 + 10 * j:20 + 10 * j]) for j in range(4))
        pts.append((ix / div, iy / div, iz / div))
        names.append(name)
    return pts, names


# -- .machines ----------------------------------------------------------------------------
def format_machines(hosts: list[str]) -> str:
    """k-point parallelism: one ``1:host`` line per parallel lapw1/lapw2/lapwso job."""
    if not hosts:
        raise InputError("no host for .machines", "set nprocs >= 1")
    lines = ["# tmdflow: k-point parallel WIEN2k jobs (one line per job)"]
    lines += [f"1:{h}" for h in hosts]
    lines += ["granularity:1", "extrafine:1"]
    return "\n".join(lines) + "\n"


# -- kgen ---------------------------------------------------------------------------------
def kgen_answers(mesh: tuple[int, int, int], structure_has_inversion: bool) -> str:
    """stdin for ``x kgen``: for a structure without inversion first 'do not add inversion'
    (0: the D3h monolayer's k-mesh must keep its true symmetry), then 0 = 'give divisions',
    the n1 n2 n3 divisions, and 0 = no shift (Gamma-centred, contains K when 3 | n)."""
    lines = [] if structure_has_inversion else ["0"]
    lines += ["0", f"{mesh[0]} {mesh[1]} {mesh[2]}", "0"]
    return "\n".join(lines) + "\n"
