"""pw.x text output: version, convergence, timing, errors and (verbosity='high') eigenvalues.

What is read from a run with several SCF cycles (relax, vc-relax, md): ``converged`` and
``n_iterations`` describe its *last* SCF, the eigenvalues are the last printed set, and the cell
is the one those eigenvalues were computed in (the last ``a(i)`` summary or ``CELL_PARAMETERS``
block printed before them), so a vc-relax gives its final cell.  A collinear spin-polarised run
(nspin = 2: ``SPIN UP`` / ``SPIN DOWN`` blocks) is refused with :class:`UnsupportedOutput`, as the
XML reader refuses it: tmdflow's band data hold one spin channel or spinors, never two channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....bands import BandData
from ....errors import OutputParseError, UnsupportedOutput
from ....units import BOHR_ANGSTROM

_NUM = re.compile(r"-?\d+\.\d+(?:[eEdD][-+]?\d+)?")


@dataclass(frozen=True)
class PwStdout:
    qe_version: str | None
    job_done: bool
    # of the LAST SCF of the run (relax/vc-relax have many): False when it ended unconverged, was
    # stopped (max_seconds) before converging, or was called converged by pw.x at electron_maxstep
    # (scf_must_converge=.false.) above its threshold; None when no SCF loop ran (bands/nscf)
    converged: bool | None
    n_iterations: int | None  # iterations of the last SCF when it converged, else None
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


_SUMMARY_AXES = re.compile(r"a\(1\)\s*=\s*\(([^)]*)\)\s*\n\s*a\(2\)\s*=\s*\(([^)]*)\)\s*\n\s*a\(3\)\s*=\s*\(([^)]*)\)")
_CELL_BLOCK = re.compile(r"^CELL_PARAMETERS\s*\(\s*(alat\s*=\s*[\d.]+|bohr|angstrom)\s*\)\s*\n((?:\s*-?\d+\.\d+\s+-?\d+\.\d+\s+-?\d+\.\d+\s*\n){3})",
                         re.MULTILINE)


def _cell_before(text: str, end: int, alat_bohr: float) -> np.ndarray | None:
    """The lattice vectors (rows, in units of alat) in force at position ``end`` of the output:
    the later of the last ``a(i) = (...)`` summary and the last ``CELL_PARAMETERS`` block (a
    vc-relax prints one after each BFGS step, the final SCF prints a new summary)."""
    head = text[:end]
    summary = list(_SUMMARY_AXES.finditer(head))
    block = list(_CELL_BLOCK.finditer(head))
    if block and (not summary or block[-1].start() > summary[-1].start()):
        units, rows = block[-1].group(1), block[-1].group(2)
        cell = np.array([[float(x) for x in line.split()] for line in rows.strip().splitlines()])
        if units.startswith("alat"):
            return cell * float(_NUM.search(units).group(0)) / alat_bohr
        return cell / alat_bohr if units == "bohr" else cell / (alat_bohr * BOHR_ANGSTROM)
    if summary:
        return np.array([[float(x) for x in _NUM.findall(summary[-1].group(i))] for i in (1, 2, 3)])
    return None


_SCF_END = re.compile(r"convergence has been achieved in\s+(\d+)\s+iterations|(convergence NOT achieved)"
                      r"|(Calculation stopped in scf loop)")


def _printed_lower_bound(number: str) -> float:
    """The smallest value that prints as ``number`` (QE rounds to the digits it prints:
    0.00000007 may be 6.5e-8, 6.3E-09 may be 6.25e-9)."""
    mantissa = re.split(r"[eEdD]", number)[0]
    decimals = len(mantissa.partition(".")[2])
    exponent = int(re.split(r"[eEdD]", number)[1]) if re.search(r"[eEdD]", number) else 0
    return float(number.replace("D", "E").replace("d", "e")) - 0.5 * 10.0 ** (exponent - decimals)


def _last_scf(text: str) -> tuple[bool | None, int | None]:
    """(converged, iterations) of the last SCF cycle in the output; (None, None) without one.

    pw.x with ``scf_must_converge = .false.`` prints "convergence has been achieved" when it
    reaches electron_maxstep, whatever the accuracy (QE sets conv_elec there): an SCF whose last
    estimated accuracy is above the printed convergence threshold is not converged."""
    ends = list(_SCF_END.finditer(text))
    if not ends:
        return None, None
    last = ends[-1]
    if not last.group(1):
        return False, None
    head = text[:last.start()]
    accuracy = re.findall(r"estimated scf accuracy\s*<\s*(\S+)\s*Ry", head)
    threshold = re.findall(r"scf convergence threshold\s*=\s*(\S+)", head)
    try:
        above = bool(accuracy and threshold) and (
            _printed_lower_bound(accuracy[-1]) > float(threshold[-1].replace("D", "E")))
    except (ValueError, IndexError):  # a value Fortran could not print ('********')
        above = False
    return (False, None) if above else (True, int(last.group(1)))


def _last_eigenvalue_marker(text: str) -> re.Match | None:
    markers = list(re.finditer(r"End of (self-consistent|band structure) calculation", text))
    return markers[-1] if markers else None


def _eigenvalue_blocks(text: str, marker: re.Match | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if marker is None:
        return [], []
    tail = text[marker.end():]
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
    where = str(source) if isinstance(source, Path) else "this pw.x output"
    if "Program PWSCF" not in text:
        raise OutputParseError("not a pw.x output (no 'Program PWSCF' banner)", "pass the pw.x stdout file")
    if re.search(r"-+\s*SPIN UP\s*-+", text):
        raise UnsupportedOutput(
            f"{where} is a collinear spin-polarised (nspin = 2) run: its SPIN UP and SPIN DOWN "
            "eigenvalues are two band structures",
            "tmdflow analyses spin-orbit (noncollinear) or spin-degenerate runs only",
        )
    version = re.search(r"Program PWSCF v\.(\S+)", text)
    err = re.search(r"Error in routine\s+(\S+)\s*\(\s*-?\d+\s*\):\s*\n\s*(.+)", text)
    converged, n_iterations = _last_scf(text)
    wall = re.findall(r"PWSCF\s*:.*CPU\s+(.+?)\s+WALL", text)
    cpu = re.findall(r"PWSCF\s*:\s*(.+?)\s+CPU", text)
    nelec = re.search(r"number of electrons\s*=\s*([\d.]+)", text)
    spinor = bool(re.search(r"calculation with spin-orbit|Noncollinear calculation", text))
    bands = None
    marker = _last_eigenvalue_marker(text)
    kpts, eigs = _eigenvalue_blocks(text, marker)
    # alat: celldm(1) has 6 decimals, the "lattice parameter (alat)" line only 4 (2e-5 1/A in |b|)
    head = text[:marker.start()] if marker else ""
    alats = re.findall(r"celldm\(1\)\s*=\s*([\d.]+)", head) or re.findall(
        r"lattice parameter \(alat\)\s*=\s*([\d.]+)", head)
    if kpts and nelec and alats:
        alat_bohr = float(alats[-1])
        axes = _cell_before(text, marker.start(), alat_bohr)
        if axes is not None:
            nb = min(len(e) for e in eigs)
            alat_ang = alat_bohr * BOHR_ANGSTROM
            bands = BandData(
                kpoints_crystal=np.array(kpts) @ axes.T,
                eigenvalues=np.array([e[:nb] for e in eigs]),
                n_electrons=float(nelec.group(1)),
                spinor=spinor,
                reciprocal_cell=2 * np.pi / alat_ang * np.linalg.inv(axes).T,
            )
    return PwStdout(
        qe_version=version.group(1) if version else None,
        job_done="JOB DONE." in text,
        converged=converged,
        n_iterations=n_iterations,
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
