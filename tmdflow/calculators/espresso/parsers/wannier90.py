"""Wannier90 3.1 outputs (run after pw2wannier90.x on a spin-orbit nscf grid): the real-space
Hamiltonian ``<seed>_hr.dat``, its Wigner-Seitz shifts ``<seed>_wsvec.dat``, the gauge matrices
``<seed>_u.mat`` / ``<seed>_u_dis.mat`` (``write_u_matrices``), pw2wannier90's formatted spin
matrices ``<seed>.spn`` and the run's log ``<seed>.wout``.  Plain functions: no store, no
FireWorks; each raises :class:`OutputParseError` naming the file and what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....errors import OutputParseError


def _lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise OutputParseError(f"Wannier90 file {path} not found", f"run {what}")
    return path.read_text().splitlines()


@dataclass(frozen=True)
class RealSpaceMatrices:
    """An operator in the Wannier basis on the lattice vectors of the Wigner-Seitz supercell:
    ``matrices[i, m, n]`` = <w_m, 0| O |w_n, R_i>, and the degeneracy of each R (the number of
    cells sharing it on the supercell's boundary)."""

    vectors: np.ndarray  # (nR, 3) int, lattice coordinates
    degeneracy: np.ndarray  # (nR,) int
    matrices: np.ndarray  # (nR, nw, nw) complex


def parse_hr(path: Path) -> RealSpaceMatrices:
    """``<seed>_hr.dat`` (``write_hr``): H(R) in eV.  The file lists, for every R, the elements
    (m, n) with m running fastest."""
    lines = _lines(path, "wannier90.x with write_hr = .true.")
    try:
        nw, nr = int(lines[1]), int(lines[2])
        ndeg_lines = -(-nr // 15)
        degeneracy = np.array(" ".join(lines[3:3 + ndeg_lines]).split(), dtype=int)
        rows = np.array(" ".join(lines[3 + ndeg_lines:]).split(), dtype=float).reshape(-1, 7)
    except (IndexError, ValueError) as exc:
        raise OutputParseError(f"{path}: not a Wannier90 _hr.dat file ({exc})", "rerun wannier90.x") from None
    if len(degeneracy) != nr or len(rows) != nr * nw * nw:
        raise OutputParseError(f"{path}: expected {nr} vectors x {nw}^2 elements, found {len(rows)} rows",
                               "file truncated? rerun wannier90.x")
    block = rows.reshape(nr, nw, nw, 7)  # [R, n, m, column]: m fastest
    if not (np.all(block[0, 0, :, 3] == np.arange(1, nw + 1)) and np.all(block[0, :, 0, 4] == np.arange(1, nw + 1))):
        raise OutputParseError(f"{path}: elements not in Wannier90's order (m fastest)", "rerun wannier90.x")
    matrices = (block[..., 5] + 1j * block[..., 6]).transpose(0, 2, 1)
    return RealSpaceMatrices(block[:, 0, 0, :3].astype(int), degeneracy, np.ascontiguousarray(matrices))


def parse_wsvec(path: Path, n_wann: int) -> dict[tuple[int, int, int, int, int], np.ndarray]:
    """``<seed>_wsvec.dat`` (``use_ws_distance``): for each (R, m, n) the supercell vectors T
    (lattice coordinates) such that w_n(r - R - T) is the image of w_n nearest to w_m; the
    element's weight is shared equally among them."""
    lines = _lines(path, "wannier90.x with use_ws_distance = .true. (its default)")
    shifts: dict[tuple[int, int, int, int, int], np.ndarray] = {}
    i = 1
    try:
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            r1, r2, r3, m, n = (int(x) for x in lines[i].split())
            count = int(lines[i + 1])
            shifts[(r1, r2, r3, m - 1, n - 1)] = np.array(
                [[int(x) for x in lines[i + 2 + j].split()] for j in range(count)], dtype=int).reshape(count, 3)
            i += 2 + count
    except (IndexError, ValueError) as exc:
        raise OutputParseError(f"{path}: not a Wannier90 _wsvec.dat file near line {i + 1} ({exc})",
                               "rerun wannier90.x") from None
    if any(not (0 <= key[3] < n_wann and 0 <= key[4] < n_wann) for key in shifts):
        raise OutputParseError(f"{path}: Wannier indices beyond {n_wann}", "use the _hr.dat of the same run")
    return shifts


def parse_u_matrices(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``<seed>_u.mat`` (num_wann x num_wann) or ``<seed>_u_dis.mat`` (num_bands x num_wann):
    (k-points in lattice coordinates (nk, 3), U (nk, rows, columns)); first index fastest."""
    lines = _lines(path, "wannier90.x with write_u_matrices = .true.")
    try:
        nk, ncol, nrow = (int(x) for x in lines[1].split())
        body = [line for line in lines[2:] if line.strip()]
        per_k = 1 + nrow * ncol
        kpoints, blocks = [], []
        for ik in range(nk):
            chunk = body[ik * per_k:(ik + 1) * per_k]
            kpoints.append([float(x) for x in chunk[0].split()])
            values = np.array(" ".join(chunk[1:]).split(), dtype=float).reshape(ncol, nrow, 2)
            blocks.append((values[..., 0] + 1j * values[..., 1]).T)  # rows fastest in the file
    except (IndexError, ValueError) as exc:
        raise OutputParseError(f"{path}: not a Wannier90 u-matrix file ({exc})", "rerun wannier90.x") from None
    return np.array(kpoints), np.array(blocks)


def parse_spn_formatted(path: Path) -> np.ndarray:
    """pw2wannier90's formatted ``<seed>.spn`` (``spn_formatted``): <u_mk| sigma_z |u_nk> for the
    bands Wannier90 uses, (nk, nb, nb); the file holds sigma_x, sigma_y, sigma_z of every element
    n <= m, m running slowest."""
    lines = _lines(path, "pw2wannier90.x with write_spn = .true. and spn_formatted = .true.")
    try:
        nb, nk = (int(x) for x in lines[1].split())
        values = np.array(" ".join(lines[2:]).split(), dtype=float)
    except (IndexError, ValueError) as exc:
        raise OutputParseError(f"{path}: not a formatted .spn file ({exc})", "rerun pw2wannier90.x") from None
    pairs = nb * (nb + 1) // 2
    if values.size != nk * pairs * 3 * 2:
        raise OutputParseError(f"{path}: expected {nk} k-points x {pairs} elements x 3 components, "
                               f"found {values.size // 2} numbers", "file truncated? rerun pw2wannier90.x")
    z = values.reshape(nk, pairs, 3, 2)[:, :, 2, :]
    z = z[..., 0] + 1j * z[..., 1]
    rows, cols = np.triu_indices(nb)  # n <= m; order: m slowest, n fastest
    order = np.lexsort((rows, cols))
    n_idx, m_idx = rows[order], cols[order]
    sigma = np.zeros((nk, nb, nb), complex)
    sigma[:, n_idx, m_idx] = z
    sigma[:, m_idx, n_idx] = np.conj(z)
    return sigma


@dataclass(frozen=True)
class WannierRun:
    """What ``<seed>.wout`` says about the run."""

    n_wann: int
    disentanglement_converged: bool | None  # None: no disentanglement
    wannierisation_converged: bool | None  # None: num_iter = 0
    total_spread_angstrom2: float | None
    max_spread_angstrom2: float | None
    completed: bool


_FINAL_SPREAD = re.compile(r"WF centre and spread\s+\d+\s+\(.*\)\s+([-\d.Ee+]+)")


def parse_wout(path: Path) -> WannierRun:
    """``<seed>.wout``: completion, convergence of disentanglement and minimisation, spreads."""
    text = "\n".join(_lines(path, "wannier90.x"))
    m = re.search(r"Number of Wannier Functions\s*:\s*(\d+)", text)
    if not m:
        raise OutputParseError(f"{path}: no 'Number of Wannier Functions' line", "not a wannier90.x log")
    final = text.split("Final State")[-1] if "Final State" in text else ""
    spreads = [float(x) for x in _FINAL_SPREAD.findall(final)]
    total = re.search(r"Sum of centres and spreads.*?\)\s+([-\d.]+)", final)
    dis = None
    if "DISENTANGLE" in text:
        dis = "<<<      Delta < " in text and "Disentanglement convergence criteria satisfied" in text
    wann = None
    if re.search(r"Number of Iterations\s*:\s*[1-9]", text):
        wann = "Wannierisation convergence criteria satisfied" in text or "<<< Delta <" in text
    return WannierRun(int(m.group(1)), dis, wann, float(total.group(1)) if total else None,
                      max(spreads) if spreads else None, "All done: wannier90 exiting" in text)
