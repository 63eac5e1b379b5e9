"""pw.x text output: version, convergence, timing, errors and (verbosity='high') eigenvalues."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....bands import BandData
from ....errors import OutputParseError
from ....units import BOHR_ANGSTROM

_NUM = re.compile(r"-?\d+\.\d+(?:[eEdD][-+]?\d+)?")


@dataclass(frozen=True)
class PwStdout:
    qe_version: str | None
    job_done: bool
    converged: bool | None  # None when no SCF loop ran (bands/nscf)
    n_iterations: int | None
    wall_seconds: float | None
    cpu_seconds: float | None  # of the first MPI process: the cost on an idle machine when others share the cores
    error: str | None  # "routine: message" of a QE error, if any
    walltime_exceeded: bool
    n_electrons: float | None
    spinor: bool
    bands: BandData | None
    # "c_bands: N eigenvalues not converged", summed over the run: in a non-SCF run these are final
    # eigenvalues short of the Davidson threshold (usually the top bands); in an SCF, transient
    unconverged_eigenvalues: int = 0
    # SCF iterations this run started ("iteration #" lines, over all ionic steps); 0 for bands/nscf
    scf_iterations_run: int = 0


def parse_duration(text: str) -> float:
    """QE clock strings: '50.82s', '1m12.46s', '1h 2m', '2h30m', '1d 3h 5m' -> seconds."""
    total = 0.0
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", text):
        total += float(value) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit]
    return total


@dataclass(frozen=True)
class ProgramClock:
    """A QE program's own final clock line, e.g. ``BANDS : 3.71s CPU 4.24s WALL``."""

    program: str
    cpu_seconds: float  # of the first MPI process
    wall_seconds: float


def parse_program_clock(source: str | Path, program: str) -> ProgramClock | None:
    """The last ``<PROGRAM> : <cpu> CPU <wall> WALL`` line of any QE output (``PWSCF``, ``BANDS``,
    ``PROJWFC``...); None when the program did not get as far as printing it."""
    text = Path(source).read_text(errors="replace") if isinstance(source, Path) else source
    found = re.findall(rf"^\s*{re.escape(program)}\s*:\s*(.+?)\s+CPU\s+(.+?)\s+WALL", text, re.MULTILINE)
    if not found:
        return None
    cpu, wall = found[-1]
    return ProgramClock(program, parse_duration(cpu), parse_duration(wall))


def _vectors(text: str, name: str) -> np.ndarray | None:
    rows = []
    for i in (1, 2, 3):
        m = re.search(rf"{name}\({i}\)\s*=\s*\(([^)]*)\)", text)
        if not m:
            return None
        rows.append([float(x) for x in _NUM.findall(m.group(1))])
    return np.array(rows)


def _eigenvalue_blocks(text: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    markers = [m.end() for m in re.finditer(r"End of (self-consistent|band structure) calculation", text)]
    if not markers:
        return [], []
    tail = text[markers[-1]:]
    kpts, eigs = [], []
    blocks = re.split(r"\n\s*k =", tail)[1:]
    for block in blocks:
        header, _, rest = block.partition("\n")
        if "bands (ev)" not in header:
            continue
        kpts.append(np.array([float(x) for x in _NUM.findall(header.split("(")[0])][:3]))
        values: list[float] = []
        for line in rest.splitlines():
            stripped = line.strip()
            if not stripped:
                if values:
                    break
                continue
            if not re.fullmatch(r"[-\d.\s]+", stripped):
                break
            values += [float(x) for x in _NUM.findall(stripped)]
        eigs.append(np.array(values))
    return kpts, eigs


def parse_pw_stdout(source: str | Path) -> PwStdout:
    text = Path(source).read_text(errors="replace") if isinstance(source, Path) else source
    if "Program PWSCF" not in text:
        raise OutputParseError("not a pw.x output (no 'Program PWSCF' banner)", "pass the pw.x stdout file")
    version = re.search(r"Program PWSCF v\.(\S+)", text)
    err = re.search(r"Error in routine\s+(\S+)\s*\(\s*-?\d+\s*\):\s*\n\s*(.+)", text)
    iters = re.search(r"convergence has been achieved in\s+(\d+)\s+iterations", text)
    not_conv = re.search(r"convergence NOT achieved", text)
    converged = True if iters else (False if not_conv else None)
    wall = re.findall(r"PWSCF\s*:.*CPU\s+(.+?)\s+WALL", text)
    cpu = re.findall(r"PWSCF\s*:\s*(.+?)\s+CPU", text)
    nelec = re.search(r"number of electrons\s*=\s*([\d.]+)", text)
    spinor = bool(re.search(r"calculation with spin-orbit|Noncollinear calculation", text))
    alat = re.search(r"lattice parameter \(alat\)\s*=\s*([\d.]+)", text)
    bands = None
    kpts, eigs = _eigenvalue_blocks(text)
    axes = _vectors(text, "a")
    recips = _vectors(text, "b")
    if kpts and nelec and alat is not None and axes is not None and recips is not None:
        nb = min(len(e) for e in eigs)
        alat_ang = float(alat.group(1)) * BOHR_ANGSTROM
        bands = BandData(
            kpoints_crystal=np.array(kpts) @ axes.T,
            eigenvalues=np.array([e[:nb] for e in eigs]),
            n_electrons=float(nelec.group(1)),
            spinor=spinor,
            reciprocal_cell=2 * np.pi / alat_ang * recips,
        )
    return PwStdout(
        qe_version=version.group(1) if version else None,
        job_done="JOB DONE." in text,
        converged=converged,
        n_iterations=int(iters.group(1)) if iters else None,
        wall_seconds=parse_duration(wall[-1]) if wall else None,
        cpu_seconds=parse_duration(cpu[-1]) if cpu else None,
        error=f"{err.group(1)}: {err.group(2).strip()}" if err else None,
        walltime_exceeded="Maximum CPU time exceeded" in text,
        unconverged_eigenvalues=sum(int(n) for n in re.findall(r"c_bands:\s+(\d+) eigenvalues not converged", text)),
        scf_iterations_run=len(re.findall(r"^\s*iteration #\s*\d+", text, re.MULTILINE)),
        n_electrons=float(nelec.group(1)) if nelec else None,
        spinor=spinor,
        bands=bands,
    )
