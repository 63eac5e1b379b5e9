"""k-points of the hexagonal Brillouin zone, in crystal coordinates of the reciprocal basis.

For the cell of :mod:`tmdflow.structures` (gamma = 120 deg) the reciprocal vectors b1, b2 make
60 deg and the special points are Gamma = (0, 0, 0), M = (1/2, 0, 0), K = (1/3, 1/3, 0),
K' = -K.  Paths come from ASE's ``bandpath`` with pbc = (1, 1, 0) (2D special points).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from ase.cell import Cell

from .errors import InputError

GAMMA = np.array([0.0, 0.0, 0.0])
K_POINT = np.array([1 / 3, 1 / 3, 0.0])
M_POINT = np.array([0.5, 0.0, 0.0])
#: Q (Lambda) valley: midway Gamma-K, where the competing conduction minimum of MX2 sits
Q_POINT = np.array([1 / 6, 1 / 6, 0.0])


def special_points_2d(cell: np.ndarray) -> dict[str, np.ndarray]:
    """ASE's 2D special points of ``cell`` (crystal coordinates), checked against our K."""
    path = Cell(np.asarray(cell)).bandpath("GMKG", npoints=0, pbc=(1, 1, 0))
    points = {k: np.asarray(v, float) for k, v in path.special_points.items()}
    return points


def gamma_k_list() -> tuple[np.ndarray, list[str]]:
    """The explicit list Gamma, K, K' used for spin splittings (K from an explicit run, see docs)."""
    return np.array([GAMMA, K_POINT, -K_POINT]), ["G", "K", "K'"]


def path_gmkg(cell: np.ndarray, npoints: int) -> tuple[np.ndarray, list[str]]:
    """Gamma-M-K-Gamma (crystal coordinates) with ``npoints`` points, labels '' between corners."""
    if npoints < 4:
        raise InputError(f"a band path needs at least 4 points, got {npoints}", "raise path_points")
    bp = Cell(np.asarray(cell)).bandpath("GMKG", npoints=npoints, pbc=(1, 1, 0))
    kpts = np.asarray(bp.kpts)
    labels = [""] * len(kpts)
    for name, coord in bp.special_points.items():
        for i, k in enumerate(kpts):
            if np.allclose(k, coord, atol=1e-8):
                labels[i] = name
    return kpts, labels


def monkhorst_pack_2d(n: int) -> tuple[int, int, int]:
    if n < 1:
        raise InputError(f"k-mesh must be >= 1, got {n}", "use e.g. 6 (quick) or 16 (paper)")
    return (n, n, 1)


def contains_k(n: int) -> bool:
    """A Gamma-centred n x n mesh contains K = (1/3, 1/3) only when 3 divides n."""
    return n % 3 == 0


def splitting_kpoints(cell: np.ndarray, path_points: int) -> tuple[np.ndarray, list[str]]:
    """The spin-orbit bands run's k list: Gamma, K, K', M, Q always; plus a Gamma-M-K-Gamma
    path of ``path_points`` points when > 0."""
    kpts = [GAMMA, K_POINT, -K_POINT, M_POINT, Q_POINT]
    labels = ["G", "K", "K'", "M", "Q"]
    if path_points:
        path, plabels = path_gmkg(cell, path_points)
        kpts += list(path)
        labels += plabels
    return np.array(kpts), labels


def splitting_kpoints_exact(path_points: int) -> tuple[list[tuple[Fraction, Fraction, Fraction]], list[str]]:
    """The same special points as :func:`splitting_kpoints` as exact fractions, plus (when
    ``path_points`` > 0) a Gamma-K-M-Gamma path with ``path_points // 3`` steps per segment.

    For codes whose k lists are integers over a common divisor (WIEN2k's klist), so that
    K = (1/3, 1/3, 0) is exact and Q = (1/6, 1/6, 0) needs no rounding.
    """
    f = Fraction
    gamma, k, m = (f(0), f(0), f(0)), (f(1, 3), f(1, 3), f(0)), (f(1, 2), f(0), f(0))
    kpts = [gamma, k, (-k[0], -k[1], f(0)), m, (f(1, 6), f(1, 6), f(0))]
    labels = ["G", "K", "K'", "M", "Q"]
    if path_points:
        n = max(2, path_points // 3)
        corners = [(gamma, "G"), (k, "K"), (m, "M"), (gamma, "G")]
        for (start, name), (end, _) in zip(corners[:-1], corners[1:]):
            for i in range(n):
                t = f(i, n)
                kpts.append(tuple(s + (e - s) * t for s, e in zip(start, end)))
                labels.append(name if i == 0 else "")
        kpts.append(gamma)
        labels.append("G")
    return kpts, labels
