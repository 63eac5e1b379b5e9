"""Plain-function parsers for WIEN2k output: ``case.scf`` and ``case.energy``/``case.energyso``.

No database, no FireWorks, no running: text in, typed values out.  Energies stay in Ry in the
parsed records (WIEN2k's unit); conversion to eV (13.605693 eV/Ry) happens where band data
for the analysis are assembled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import OutputParseError

_FLOAT = r"[-+]?\d+\.\d*(?:[EeDd][-+]?\d+)?"


@dataclass(frozen=True)
class Wien2kScf:
    """What ``case.scf`` says about an SCF cycle (values of each iteration, in file order)."""

    total_energies_ry: tuple[float, ...]  # :ENE per iteration
    fermi_energies_ry: tuple[float, ...]  # :FER per iteration
    charge_distances: tuple[float, ...]  # :DIS per iteration (electrons)
    gap_ev: float | None  # last :GAP (global) (or the only :GAP line), eV
    warnings: tuple[str, ...]  # :WAR... lines, verbatim
    n_iterations: int

    @property
    def total_energy_ry(self) -> float | None:
        return self.total_energies_ry[-1] if self.total_energies_ry else None

    @property
    def fermi_energy_ry(self) -> float | None:
        return self.fermi_energies_ry[-1] if self.fermi_energies_ry else None

    def converged(self, energy_tolerance_ry: float, charge_tolerance: float) -> bool:
        """run_lapw's criteria: the last two :ENE within ``-ec`` and the last :DIS below ``-cc``."""
        e, d = self.total_energies_ry, self.charge_distances
        return (len(e) >= 2 and abs(e[-1] - e[-2]) < energy_tolerance_ry
                and bool(d) and d[-1] < charge_tolerance)


def parse_scf(path: Path) -> Wien2kScf:
    """Read ``case.scf`` (the concatenated iterations written by run_lapw)."""
    path = Path(path)
    if not path.is_file():
        raise OutputParseError(f"{path} not found", "run_lapw writes case.scf; check case.dayfile")
    ene, fer, dis, warns = [], [], [], []
    gap = None
    iterations = 0
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(":ITE"):
            iterations += 1
        elif line.startswith(":ENE"):
            m = re.search(r"=\s*(" + _FLOAT + ")", line)
            if m:
                ene.append(float(m.group(1)))
        elif line.startswith(":FER"):
            m = re.search(r"=\s*(" + _FLOAT + ")", line)
            if m:
                fer.append(float(m.group(1)))
        elif line.startswith(":DIS"):
            m = re.findall(_FLOAT, line.split(")")[-1] if ")" in line else line)
            if m:
                dis.append(float(m[-1]))
        elif line.startswith(":GAP"):
            if "(this spin)" in line and gap is not None:
                continue
            m = re.search(r"=\s*(" + _FLOAT + r")\s*eV", line)
            if m:
                gap = float(m.group(1))
        elif line.startswith(":WAR"):
            warns.append(line.strip())
    if not ene:
        raise OutputParseError(f"{path} has no ':ENE' line: no SCF iteration finished",
                               "read case.dayfile and the *.error files in the case directory")
    return Wien2kScf(tuple(ene), tuple(fer), tuple(dis), gap, tuple(warns), iterations or len(ene))


@dataclass(frozen=True)
class Wien2kKpoint:
    coordinates: tuple[float, float, float]  # as written (the klist's units: reciprocal basis for P/H)
    name: str
    n_basis: int  # NV: number of basis functions (plane waves + local orbitals)
    weight: float
    energies_ry: tuple[float, ...]


@dataclass(frozen=True)
class Wien2kEnergies:
    kpoints: tuple[Wien2kKpoint, ...]

    @property
    def coordinates(self) -> np.ndarray:
        return np.array([k.coordinates for k in self.kpoints], float)

    def eigenvalues_ry(self, n_bands: int | None = None) -> np.ndarray:
        """(nk, nbnd) — the common number of levels over all k-points (or ``n_bands``)."""
        n = min(len(k.energies_ry) for k in self.kpoints)
        if n_bands is not None:
            if n_bands > n:
                raise OutputParseError(f"only {n} levels at some k-point, {n_bands} requested",
                                       "raise the energy window (emax) in case.in1 / case.inso")
            n = n_bands
        return np.array([k.energies_ry[:n] for k in self.kpoints], float)


_KREC = re.compile(r"^[ \-+0-9.EeDd]{57}")


def _is_k_record(line: str) -> bool:
    if len(line) < 79 or not _KREC.match(line):
        return False
    try:
        [float(line[i:i + 19].replace("D", "E")) for i in (0, 19, 38)]
        int(line[67:73]), int(line[73:79])
    except ValueError:
        return False
    return True


def parse_energy(path: Path, n_inequivalent_atoms: int) -> Wien2kEnergies:
    """Read ``case.energy`` / ``case.energyso`` (lapw1 / lapwso).

    Layout: 2 header lines per inequivalent atom (linearisation energies), then per k-point a
    record ``3E19.12`` coordinates, ``A10`` name, ``2I6`` NV and NE, ``F5.1`` weight, followed
    by NE lines ``index energy(Ry)``.  The coordinates are read by column, not split on blanks:
    negative values fill all 19 columns and touch their neighbour.
    """
    path = Path(path)
    if not path.is_file():
        raise OutputParseError(f"{path} not found", "lapw1 (case.energy) / lapwso (case.energyso) did not finish")
    lines = path.read_text(errors="replace").splitlines()
    header = 2 * n_inequivalent_atoms
    if len(lines) < header + 1:
        raise OutputParseError(f"{path} is truncated ({len(lines)} lines)", "rerun lapw1/lapwso")
    i = header
    kpoints = []
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if not _is_k_record(line):
            raise OutputParseError(
                f"{path}:{i + 1}: expected a k-point record (3E19.12,A10,2I6,F5.1), got {line[:60]!r}",
                f"is {n_inequivalent_atoms} the number of inequivalent atoms of this case? "
                "(2 header lines per atom precede the first k-point)")
        coords = tuple(float(line[j:j + 19].replace("D", "E")) for j in (0, 19, 38))
        name = line[57:67].strip()
        nv, ne = int(line[67:73]), int(line[73:79])
        weight = float(line[79:84]) if line[79:84].strip() else 0.0
        block = lines[i + 1:i + 1 + ne]
        if len(block) < ne:
            raise OutputParseError(f"{path}: k-point {len(kpoints) + 1} lists {ne} levels, file ends after "
                                   f"{len(block)}", "the run was interrupted; rerun lapw1/lapwso")
        energies = []
        for j, row in enumerate(block, start=1):
            parts = row.split()
            if len(parts) < 2 or int(parts[0]) != j:
                raise OutputParseError(f"{path}:{i + 1 + j}: expected 'index energy', got {row!r}",
                                       "the file is damaged")
            energies.append(float(parts[1].replace("D", "E")))
        kpoints.append(Wien2kKpoint(coords, name, nv, weight, tuple(energies)))
        i += 1 + ne
    if not kpoints:
        raise OutputParseError(f"{path} holds no k-point", "lapw1/lapwso did not run")
    return Wien2kEnergies(tuple(kpoints))


def energy_files(directory: Path, case: str, suffix: str) -> list[Path]:
    """``case.<suffix>`` or, after a k-parallel run (``-p``), ``case.<suffix>_1 … _N`` in order."""
    directory = Path(directory)
    parts = sorted(directory.glob(f"{case}.{suffix}_*"), key=lambda p: int(p.name.rsplit("_", 1)[1])
                   if p.name.rsplit("_", 1)[1].isdigit() else 0)
    parts = [p for p in parts if p.name.rsplit("_", 1)[1].isdigit()]
    single = directory / f"{case}.{suffix}"
    if parts and (not single.is_file() or min(p.stat().st_mtime for p in parts) >= single.stat().st_mtime):
        return parts
    return [single]


def parse_energy_files(paths: list[Path], n_inequivalent_atoms: int) -> Wien2kEnergies:
    out: list[Wien2kKpoint] = []
    for p in paths:
        out.extend(parse_energy(p, n_inequivalent_atoms).kpoints)
    return Wien2kEnergies(tuple(out))


def electrons_from_in2(text: str) -> float:
    """NE (valence electrons) from ``case.in2``/``case.in2c``, second line: EMIN, NE, ..."""
    lines = text.splitlines()
    try:
        return float(lines[1].split()[1])
    except (IndexError, ValueError):
        raise OutputParseError("case.in2: second line is not 'EMIN NE ESEPERMIN ESEPER0 ...'",
                               "regenerate it with init_lapw") from None
