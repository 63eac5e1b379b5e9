"""Spin-orbit splitting over the k_z = 0 plane: the irreducible wedge and its unfolding.

The spin-orbit run is made on the grid points (i/N, j/N) of the irreducible wedge Gamma-M-K
(crystal coordinates u, v of b1, b2 at 60 deg: 0 <= v <= u, 2u + v <= 1; N divisible by 3 so that
K is on the grid).  The full zone follows from the 12 operations that leave E(k) invariant for a
non-magnetic D3h layer: the point group's C3 rotations and vertical mirrors, and time reversal
(k -> -k).  <sigma_z> changes sign under time reversal and under the vertical mirrors whose
line in k-space is a Gamma-M line (they map K to K'); it is kept under C3 and under the mirrors
across Gamma-K lines.  Hence Delta(k) = 0 on Gamma-M lines and Delta(K') = -Delta(K).

Signed splitting of a band pair (docs/physics.md): Delta(k) = E(state with <sigma_z> > 0) -
E(state with <sigma_z> < 0), in meV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import BandData
from ..errors import AnalysisError, InputError


def wedge_points(n: int) -> np.ndarray:
    """Crystal coordinates (m, 3) of the grid points of the irreducible wedge Gamma-M-K."""
    if n < 3 or n % 3:
        raise InputError(f"map_points must be a multiple of 3 (>= 3) so that K lies on the grid, got {n}",
                         "use e.g. map_points: 36 (paper) or 6 (tests)")
    pts = [(i / n, j / n, 0.0) for j in range(n + 1) for i in range(j, n + 1) if 2 * i + j <= n]
    return np.array(pts)


def check_points(n: int, count: int = 8) -> np.ndarray:
    """Crystal coordinates (count, 3) of points *between* the wedge grid's points, computed
    directly beside the map to measure the interpolation of Fig. 3 (tmdflow.analysis.bzinterp):
    centroids of the grid's triangles inside the wedge -- the points farthest from every grid
    point -- spread evenly over it (all of them when there are fewer than ``count``).  They lie
    on the 3N x 3N grid, never on the N x N one, so one run holds both (:func:`on_wedge_grid`)."""
    wedge_points(n)  # the same validation of n
    inside = []
    for j in range(n):
        for i in range(j, n):
            for du, dv in ((1 / 3, 1 / 3), (2 / 3, 2 / 3)):
                u, v = (i + du) / n, (j + dv) / n
                if v < u - 1e-12 and 2 * u + v < 1 - 1e-12:
                    inside.append((u, v, 0.0))
    pts = np.array(inside)
    if len(pts) <= count:
        return pts
    return pts[np.round(np.linspace(0, len(pts) - 1, count)).astype(int)]


def on_wedge_grid(kpoints_crystal: np.ndarray, n: int) -> np.ndarray:
    """Mask of the k-points that are points (i/N, j/N) of the map's grid (not check points)."""
    k = np.asarray(kpoints_crystal)[:, :2] * n
    return np.all(np.abs(k - np.round(k)) < 1e-4, axis=1)


@dataclass(frozen=True)
class KOperation:
    matrix: np.ndarray  # 2x2, Cartesian, acting on (kx, ky)
    sigma_sign: int  # +1: <sigma_z> kept, -1: reversed
    name: str


def k_operations(reciprocal_cell: np.ndarray) -> list[KOperation]:
    """The 12 operations (rotations by m*60 deg, mirrors across Gamma-M and Gamma-K lines)."""
    b = np.asarray(reciprocal_cell)[:2, :2]
    theta_m = np.arctan2(*(np.array([0.5, 0.0]) @ b)[::-1])
    theta_k = np.arctan2(*(np.array([1 / 3, 1 / 3]) @ b)[::-1])
    ops = []
    for m in range(6):
        a = m * np.pi / 3
        ops.append(KOperation(np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]),
                              1 if m % 2 == 0 else -1, f"C6^{m}"))
    for kind, theta0, sign in (("mirror G-M", theta_m, -1), ("mirror G-K", theta_k, 1)):
        for m in range(3):
            t = theta0 + m * np.pi / 3
            ops.append(KOperation(np.array([[np.cos(2 * t), np.sin(2 * t)], [np.sin(2 * t), -np.cos(2 * t)]]),
                                  sign, f"{kind} {m}"))
    return ops


def signed_pair_splitting(energies: np.ndarray, sigma_z: np.ndarray, lower: int) -> np.ndarray:
    """Delta = E(up) - E(down) in meV for the band pair (lower, lower + 1) at every k-point;
    0 where the pair is degenerate or the spins are not opposite (no defined sign)."""
    e1, e2 = energies[:, lower], energies[:, lower + 1]
    s1, s2 = sigma_z[:, lower], sigma_z[:, lower + 1]
    delta = np.where(s2 > s1, e2 - e1, e1 - e2) * 1000.0
    return np.where(np.sign(s1) == -np.sign(s2), delta, 0.0)


@dataclass(frozen=True)
class SplittingMap:
    """The unfolded map: Cartesian k (1/Angstrom), UVB energy (eV, VBM = 0) and spin, Delta of
    the uppermost valence and lowermost conduction pairs (meV), and how spin-polarised the
    conduction pair is (the smaller |<sigma_z>| of its two states; None where not known)."""

    k_cartesian: np.ndarray  # (m, 2)
    uvb_energy_ev: np.ndarray  # (m,)
    uvb_sigma_z: np.ndarray  # (m,)
    delta_uvb_mev: np.ndarray  # (m,)
    delta_lcb_mev: np.ndarray  # (m,)
    reciprocal_cell: np.ndarray
    lcb_min_abs_sigma_z: np.ndarray | None = None  # (m,): below ~0.8 the LCB's Delta is no spin splitting


def unfold(bands: BandData) -> SplittingMap:
    """From a spin-orbit run on :func:`wedge_points` (with <sigma_z>) to the whole zone."""
    if bands.sigma_z is None or not bands.spinor:
        raise AnalysisError("the map needs a spin-orbit run with <sigma_z>", "run the soc_map step (bands.x)")
    nocc = bands.n_occupied
    e, sz = np.asarray(bands.eigenvalues), np.asarray(bands.sigma_z)
    vbm = float(e[:, nocc - 1].max())
    return unfold_wedge(bands.kpoints_cartesian[:, :2], e[:, nocc - 1] - vbm, sz[:, nocc - 1],
                        signed_pair_splitting(e, sz, nocc - 2), signed_pair_splitting(e, sz, nocc),
                        bands.reciprocal_cell, np.abs(sz[:, nocc:nocc + 2]).min(axis=1))


def unfold_wedge(k_cartesian: np.ndarray, uvb_energy_ev: np.ndarray, uvb_sigma_z: np.ndarray,
                 delta_uvb_mev: np.ndarray, delta_lcb_mev: np.ndarray, reciprocal_cell: np.ndarray,
                 lcb_min_abs_sigma_z: np.ndarray | None = None) -> SplittingMap:
    """Wedge values -> the whole zone by the 12 operations (<sigma_z> and Delta change sign with
    the operations that reverse spin, |<sigma_z>| is kept); each point once."""
    ops = k_operations(reciprocal_cell)
    k = np.vstack([k_cartesian @ op.matrix.T for op in ops])
    signs = np.concatenate([np.full(len(k_cartesian), op.sigma_sign) for op in ops])
    tile = (lambda a: np.tile(np.asarray(a), len(ops)))
    # the images that fall on the wedge's edges twice (to 1e-4 / Angstrom, far below a grid step)
    _, keep = np.unique(np.round(k * 1e4).astype(np.int64), axis=0, return_index=True)
    keep = np.sort(keep)
    return SplittingMap(k[keep], tile(uvb_energy_ev)[keep], (signs * tile(uvb_sigma_z))[keep],
                        (signs * tile(delta_uvb_mev))[keep], (signs * tile(delta_lcb_mev))[keep],
                        np.asarray(reciprocal_cell),
                        None if lcb_min_abs_sigma_z is None else tile(lcb_min_abs_sigma_z)[keep])


def on_gamma_m_edge(kpoints_crystal: np.ndarray) -> np.ndarray:
    """Mask of wedge points on the Gamma-M edge (v = 0)."""
    return np.abs(np.asarray(kpoints_crystal)[:, 1]) < 1e-9


def bz_hexagon(reciprocal_cell: np.ndarray) -> np.ndarray:
    """Corners (7, 2) of the first Brillouin zone (closed), Cartesian 1/Angstrom."""
    b = np.asarray(reciprocal_cell)[:2, :2]
    k = np.array([1 / 3, 1 / 3]) @ b
    ang = np.arctan2(k[1], k[0])
    r = np.linalg.norm(k)
    return np.array([[r * np.cos(ang + m * np.pi / 3), r * np.sin(ang + m * np.pi / 3)] for m in range(7)])
