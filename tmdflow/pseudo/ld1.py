"""Running ld1.x and reading its output: version, AE-vs-PS eigenvalue tests, log-derivatives."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CalculationFailed, ExecutableNotFound, OutputParseError
from ..units import MEV_PER_EV, RYDBERG_EV


@dataclass(frozen=True)
class EigenvalueTest:
    """One row of ld1.x's 'Testing the pseudopotential' table (energies in Ry)."""

    label: str
    j: float | None
    occupation: float
    e_ae: float
    e_ps: float

    @property
    def error(self) -> float:
        return self.e_ae - self.e_ps


RY_TO_MEV = RYDBERG_EV * MEV_PER_EV
_L_OF = {"S": 0, "P": 1, "D": 2, "F": 3}


@dataclass(frozen=True)
class SpinOrbitSplitting:
    """E(j = l + 1/2) - E(j = l - 1/2) of one atomic level, all-electron vs pseudo-atom (meV).

    The atom's level splitting is what the crystal's band splittings inherit (Δ_VB(K) of the
    W compounds is set by W 5d), so its PS-vs-AE error bounds the pseudopotential's share of an
    error in Δ.
    """

    label: str
    ae_mev: float
    ps_mev: float

    @property
    def error_mev(self) -> float:
        return self.ps_mev - self.ae_mev

    @property
    def relative_error(self) -> float:
        return abs(self.error_mev) / abs(self.ae_mev) if self.ae_mev else 0.0


def spin_orbit_splittings(rows: list[EigenvalueTest]) -> list[SpinOrbitSplitting]:
    """Pair the j = l ± 1/2 rows of a fully relativistic (rel=2) test table, level by level."""
    by_level: dict[tuple[str, float], EigenvalueTest] = {}
    for row in rows:
        if row.j is not None:
            by_level[(row.label, row.j)] = row
    pairs = []
    for (label, j), upper in by_level.items():
        l = _L_OF[label[-1]]
        lower = by_level.get((label, l - 0.5))
        if l > 0 and j == l + 0.5 and lower is not None:
            pairs.append(SpinOrbitSplitting(
                label=label,
                ae_mev=(upper.e_ae - lower.e_ae) * RY_TO_MEV,
                ps_mev=(upper.e_ps - lower.e_ps) * RY_TO_MEV,
            ))
    return pairs


def require_executable(command: str, package: str = "quantum-espresso") -> str:
    path = shutil.which(command)
    if path is None:
        raise ExecutableNotFound(
            f"'{command}' not found on PATH",
            f"install it (Debian: apt-get install {package}) or set the matching TMDFLOW_*_COMMAND",
        )
    return path


def run_ld1(input_text: str, workdir: Path, command: str = "ld1.x", timeout: float = 300) -> str:
    """Run ld1.x in ``workdir`` with ``input_text`` on stdin; return its output text."""
    exe = require_executable(command)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ld1.in").write_text(input_text)
    proc = subprocess.run(
        [exe], input=input_text, cwd=workdir, capture_output=True, text=True, timeout=timeout,
        errors="replace",
    )
    out = proc.stdout
    (workdir / "ld1.out").write_text(out + proc.stderr)
    err = re.search(r"Error in routine\s+(\S+).*?\n\s*(.+?)\n", out)
    if proc.returncode != 0 or err:
        detail = f"{err.group(1)}: {err.group(2).strip()}" if err else proc.stderr.strip()[-300:]
        raise CalculationFailed(
            f"ld1.x failed in {workdir}: {detail}",
            "the recipe is not usable with this ld1.x; see ld1.out there and the recipe notes",
        )
    return out


def ld1_version(output: str) -> str:
    m = re.search(r"Program LD1 v\.(\S+)", output)
    return m.group(1) if m else "unknown"


_ROW = re.compile(
    r"^\s*\d+\s+\d+\s+(?:(\d\.\d)\s+)?(\d[SPDF])\s+\d+\(\s*([-\d.]+)\)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*!?\s*$"
)


def parse_eigenvalue_tests(output: str) -> list[EigenvalueTest]:
    """Rows of the last 'Testing the pseudopotential' section of an ld1.x output."""
    sections = output.split("Testing the pseudopotential")
    if len(sections) < 2:
        raise OutputParseError("ld1.x output has no pseudopotential test section", "check ld1.out")
    rows = []
    for line in sections[-1].splitlines():
        m = _ROW.match(line)
        if m:
            j, label, occ, e_ae, e_ps, _ = m.groups()
            rows.append(EigenvalueTest(label, float(j) if j else None, float(occ), float(e_ae), float(e_ps)))
        elif rows and "eps =" in line:
            break
    if not rows:
        raise OutputParseError("ld1.x test section has no eigenvalue rows", "check ld1.out")
    return rows


def read_logder(path: Path) -> np.ndarray:
    """A ``.dlog`` file: column 0 energy (Ry), then one column per angular momentum."""
    if not path.is_file():
        raise OutputParseError(f"log-derivative file {path} not written by ld1.x", "check ld1.out")
    return np.loadtxt(path)


def count_poles(values: np.ndarray) -> int:
    """Number of poles of a logarithmic derivative sampled on an increasing energy grid.

    Between poles the log-derivative decreases monotonically with energy; at a pole it jumps
    from -inf to +inf, i.e. an increase between consecutive samples.  Small numerical
    wiggles are ignored by requiring the jump to be large compared with the typical step.
    """
    steps = np.diff(values)
    typical = np.median(np.abs(steps)) + 1e-12
    return int(np.sum(steps > max(10 * typical, 1.0)))
