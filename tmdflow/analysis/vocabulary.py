"""One vocabulary for where band edges sit and what kind of gap a result has.

Every command, table, data file and figure names band-edge locations and gap types through
this module, so that one k-point has one name everywhere (docs/physics.md, "Names of k-points"):

    Gamma, K, K', M   the zone centre and corners/edge centre of the hexagonal zone
    Q                 the midpoint of Gamma-K, (1/6, 1/6, 0): the conduction valley of WX2
    0.37 Gamma-K      a point on Gamma-K, as the fraction of the way from Gamma to K
    0.40 Gamma-M      a point on Gamma-M, likewise
    k=(0.100, 0.200, 0.000)   anything else, crystal coordinates

Gap types: ``direct at K`` (both edges at one point) or ``indirect: VBM at Gamma, CBM at Q``.
Names stored by earlier versions (``G``, ``0.50 Gamma-K``, ``k=(0.167, 0.167, 0.000)``) are read
through :func:`canonical_location`, so old documents show today's names.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

GAMMA, K, K_PRIME, M, Q = "Gamma", "K", "K'", "M", "Q"
SPECIAL_POINTS: dict[str, tuple[float, float]] = {
    GAMMA: (0.0, 0.0), K: (1 / 3, 1 / 3), K_PRIME: (-1 / 3, -1 / 3), M: (0.5, 0.0), Q: (1 / 6, 1 / 6),
}
#: crystal units; pw.x's text output prints k with 4 decimals (and in Cartesian units)
TOLERANCE = 2e-3
_ALIASES = {"G": GAMMA, "Γ": GAMMA, "\\Gamma": GAMMA, "GAMMA": GAMMA, "gamma": GAMMA}
_K_TEXT = re.compile(r"^k=\(\s*([-+0-9.eE]+),\s*([-+0-9.eE]+),\s*([-+0-9.eE]+)\)$")
_ON_LINE = re.compile(r"^([0-9.]+) (Gamma-K|Gamma-M)$")


def _same_point(k: np.ndarray, target: tuple[float, float], tol: float) -> bool:
    d = k[:2] - np.asarray(target)
    return bool(np.all(np.abs(d - np.round(d)) < tol))


def kpoint_location(k_crystal: Sequence[float], label: str | None = None, tol: float = TOLERANCE) -> str:
    """The name of the k-point ``k_crystal`` (crystal coordinates of the hexagonal reciprocal
    basis); ``label``, the run's own label, names a point that has no name here."""
    k = np.asarray(k_crystal, float)
    in_plane = abs(k[2]) < tol if len(k) > 2 else True
    if in_plane:
        for name, target in SPECIAL_POINTS.items():
            if _same_point(k, target, tol):
                return name
        if abs(k[0] - k[1]) < tol and 0 < k[0] < 1 / 3:
            return f"{3 * (k[0] + k[1]) / 2:.2f} Gamma-K"
        if abs(k[1]) < tol and 0 < k[0] < 0.5:
            return f"{2 * k[0]:.2f} Gamma-M"
    if label:
        return canonical_location(label)
    return "k=(" + ", ".join(f"{x:.3f}" for x in k) + ")"


def canonical_location(name: str) -> str:
    """Today's name for a location string, also one stored by an earlier version."""
    name = name.strip()
    if name in _ALIASES:
        return _ALIASES[name]
    m = _K_TEXT.match(name)
    if m:
        return kpoint_location([float(x) for x in m.groups()])
    m = _ON_LINE.match(name)
    if m:
        t = float(m.group(1))
        k = (t / 3, t / 3, 0.0) if m.group(2) == "Gamma-K" else (t / 2, 0.0, 0.0)
        return kpoint_location(k, tol=6e-3)  # two printed decimals of the fraction
    return name


def gap_type(vbm_location: str, cbm_location: str) -> str:
    """``direct at K`` or ``indirect: VBM at Gamma, CBM at Q``."""
    vbm, cbm = canonical_location(vbm_location), canonical_location(cbm_location)
    return f"direct at {vbm}" if vbm == cbm else f"indirect: VBM at {vbm}, CBM at {cbm}"


def gap_type_of(splitting) -> str:
    """The gap type of a ``SplittingResult`` (stored or fresh)."""
    return gap_type(splitting.vbm_location, splitting.cbm_location)


def latex_location(text: str) -> str:
    """A location or gap-type string for LaTeX: Gamma as $\\Gamma$, primes kept."""
    return re.sub(r"\bGamma\b", r"$\\Gamma$", text)
