"""The Elk relaxation's code-independent part: the lattice-constant scan, its equation-of-state
fit, and the ideal structure rebuilt from what Elk's geometry optimisation ended with.

Elk 8.4's task 2 moves the atoms along the forces (at fixed cell) until the largest force is
below ``epsforce``; it writes the result to GEOMETRY.OUT with 8-digit positions after shifting
the first atom to the origin.  Those digits are too few for Elk's own symmetry finder (and for
spglib at tight tolerance), so tmdflow reads only the relaxed *heights* from GEOMETRY.OUT (d of
a monolayer, z of 2H bulk) and rebuilds the ideal prism with :mod:`tmdflow.structures`.

A monolayer's in-plane lattice constant comes from an E(a) scan: at each a the positions are
relaxed (task 2), the total energy of the relaxed end point is E(a), a Birch-Murnaghan equation
of state (``ase.eos``) is fitted through E(V) at the fixed cell height, and its minimum must lie
inside the scan.  No file I/O, no running: tmdflow.calculators.elk.adapter drives Elk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from scipy.optimize import OptimizeWarning

from ...errors import CalculationFailed, InputError
from ...structures import build_bulk_2h, build_monolayer, parse_formula
from ...units import BOHR_ANGSTROM
from .parsers import ElkGeometry

#: Birch-Murnaghan has four parameters: a scan needs at least this many points
MIN_SCAN_POINTS = 4
#: how far from the ideal prism GEOMETRY.OUT's in-plane positions and mirror heights may be
#: (lattice coordinates; Elk writes 8 digits, so a symmetric result is within ~1e-8)
GEOMETRY_TOLERANCE = 1e-5


def scan_lattice_constants(a0: float, points: int, step: float) -> tuple[float, ...]:
    """``points`` lattice constants centred on ``a0``, ``step`` (a fraction of a0) apart."""
    if points < MIN_SCAN_POINTS:
        raise InputError(f"elk_scan_points = {points}: a Birch-Murnaghan fit needs at least {MIN_SCAN_POINTS}",
                         f"set elk_scan_points >= {MIN_SCAN_POINTS} (5 is the default)")
    if not 0 < step < 0.1:
        raise InputError(f"elk_scan_step = {step} is not a fraction of a in (0, 0.1)", "use e.g. 0.01 (1 %)")
    return tuple(a0 * (1 + (i - (points - 1) / 2) * step) for i in range(points))


@dataclass(frozen=True)
class LatticeFit:
    """The Birch-Murnaghan fit of E(a) at fixed cell height."""

    a_angstrom: float  # the fitted minimum
    energy_ev: float  # E at the minimum
    bulk_modulus_ev_a3: float  # B of the fit (the cell's, vacuum included: only its sign matters)
    a_scan_angstrom: tuple[float, ...]
    energies_ev: tuple[float, ...]
    eos: str = "birchmurnaghan"

    def as_output(self) -> dict:
        return {"a_angstrom": list(self.a_scan_angstrom), "energy_ev": list(self.energies_ev),
                "a_fit_angstrom": self.a_angstrom, "energy_fit_ev": self.energy_ev, "eos": self.eos}


def hexagonal_area(a: float) -> float:
    return math.sqrt(3) / 2 * a * a


def fit_lattice_constant(a_values: list[float] | tuple[float, ...], energies_ev: list[float] | tuple[float, ...],
                         cell_height_angstrom: float) -> LatticeFit:
    """The E(a) minimum of a hexagonal cell of height c (fixed): Birch-Murnaghan through E(V),
    V = (sqrt 3 / 2) a^2 c.  Refuses a minimum outside the scanned a (or no minimum at all)."""
    from ase.eos import EquationOfState

    a_values, energies = [float(a) for a in a_values], [float(e) for e in energies_ev]
    if len(a_values) != len(energies) or len(a_values) < MIN_SCAN_POINTS:
        raise InputError(f"E(a) fit with {len(a_values)} lattice constants and {len(energies)} energies",
                         f"give the same number of each, at least {MIN_SCAN_POINTS}")
    lo, hi = min(a_values), max(a_values)
    fix = ("start from a closer a (inputs/materials.yaml, or --a) or widen the scan "
           "(elk_scan_step, elk_scan_points)")
    if int(np.argmin(energies)) in (0, len(energies) - 1):
        raise CalculationFailed(
            f"relax: the lowest E(a) is at the edge of the scan {lo:.4f}-{hi:.4f} A "
            f"(a = {a_values[int(np.argmin(energies))]:.4f} A): the minimum lies outside it", fix)
    volumes = [hexagonal_area(a) * cell_height_angstrom for a in a_values]
    try:
        with warnings.catch_warnings():  # 4 points for 4 parameters: no covariance, said by scipy
            warnings.simplefilter("ignore", OptimizeWarning)
            v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit(warn=False)
    except (RuntimeError, ValueError) as exc:  # scipy's curve_fit found no minimum
        raise CalculationFailed(f"relax: no Birch-Murnaghan fit through E(a) at a = {lo:.4f}-{hi:.4f} A ({exc})",
                                fix) from None
    a_fit = math.sqrt(v0 / (math.sqrt(3) / 2 * cell_height_angstrom))
    if not (lo < a_fit < hi) or not b > 0:
        raise CalculationFailed(
            f"relax: the E(a) minimum a = {a_fit:.4f} A lies outside the scan {lo:.4f}-{hi:.4f} A", fix)
    return LatticeFit(a_fit, float(e0), float(b), tuple(a_values), tuple(energies))


def _metal_and_chalcogens(geometry: ElkGeometry, formula: str) -> tuple[list[int], list[int]]:
    metal, chalcogen = parse_formula(formula)
    metals = [i for i, s in enumerate(geometry.symbols) if s == metal]
    chalcogens = [i for i, s in enumerate(geometry.symbols) if s == chalcogen]
    if not metals or len(chalcogens) != 2 * len(metals) or len(metals) + len(chalcogens) != len(geometry.symbols):
        raise CalculationFailed(f"relax: GEOMETRY.OUT holds {geometry.symbols}, not {formula}",
                                "report this as a tmdflow bug (the relax run was not this material's)")
    return metals, chalcogens


def _wrapped(x: np.ndarray) -> np.ndarray:
    return x - np.round(x)


def _heights(geometry: ElkGeometry, formula: str) -> np.ndarray:
    """|z_X - z_M| (lattice units of c) of every chalcogen to its nearest metal in z, with the
    in-plane positions checked against the ideal prism (X above M's neighbour sites only)."""
    metals, chalcogens = _metal_and_chalcogens(geometry, formula)
    pos = geometry.positions_lattice
    heights = []
    for x in chalcogens:
        dz = _wrapped(pos[x, 2] - pos[metals, 2])
        m = int(np.argmin(np.abs(dz)))
        dxy = _wrapped(pos[x, :2] - pos[metals[m], :2])
        if not any(np.allclose(dxy, s, atol=GEOMETRY_TOLERANCE) for s in ([1 / 3, -1 / 3], [-1 / 3, 1 / 3])):
            raise CalculationFailed(
                f"relax: atom {x + 1} of GEOMETRY.OUT sits at in-plane {pos[x, :2]} next to the metal at "
                f"{pos[metals[m], :2]}: not the trigonal prism", "read GEOMETRY_OPT.OUT and INFO.OUT of the relax run")
        heights.append(abs(float(dz[m])))
    heights = np.array(heights)
    if heights.max() - heights.min() > GEOMETRY_TOLERANCE:
        raise CalculationFailed(f"relax: the chalcogen heights in GEOMETRY.OUT differ ({heights} c): the mirror "
                                "plane was lost", "read GEOMETRY_OPT.OUT and INFO.OUT of the relax run")
    return heights


def lattice_constants(geometry: ElkGeometry) -> tuple[float, float]:
    """a and c (Angstrom) of a hexagonal GEOMETRY.OUT."""
    lat = geometry.lattice_bohr * BOHR_ANGSTROM
    return float(np.linalg.norm(lat[0])), float(np.linalg.norm(lat[2]))


def relaxed_height(geometry: ElkGeometry, formula: str) -> float:
    """A monolayer's M-X height d (A) in GEOMETRY.OUT (the prism checked)."""
    return float(np.mean(_heights(geometry, formula))) * lattice_constants(geometry)[1]


def relaxed_monolayer(geometry: ElkGeometry, formula: str, vacuum: float) -> tuple[Atoms, float]:
    """The ideal P-6m2 monolayer with GEOMETRY.OUT's a and relaxed height d, in ``vacuum`` (A);
    returns it and d (A)."""
    d = relaxed_height(geometry, formula)
    return build_monolayer(formula, lattice_constants(geometry)[0], d, vacuum), d


def monolayer_in_cell(formula: str, a: float, d: float, cell_height: float) -> Atoms:
    """The ideal monolayer (a, d) in a cell of the given height (A): the scan keeps the height of
    the cell it started from while d relaxes (a 10 A vacuum then holds 10 A - 2 (d - d0))."""
    atoms = build_monolayer(formula, a, d, max(cell_height - 2 * d, 10.0))
    shift = (cell_height - atoms.cell[2, 2]) / 2
    cell = atoms.cell[:].copy()
    cell[2, 2] = cell_height
    atoms.set_cell(cell, scale_atoms=False)
    atoms.positions[:, 2] += shift
    return atoms


def starting_height(a_done: list[float], heights_done: list[float], a: float, default: float) -> float:
    """Where the next scan point's relaxation starts: ``default`` (the given d) for the first,
    the previous relaxed d for the second, then the line through the last two (d falls with a
    almost linearly: 1.576, 1.546, 1.518, 1.482 A at 3 % steps, MoS2): fewer optimisation steps."""
    if not heights_done:
        return default
    if len(heights_done) == 1:
        return heights_done[0]
    (a1, d1), (a2, d2) = (a_done[-2], heights_done[-2]), (a_done[-1], heights_done[-1])
    return d2 + (d2 - d1) * (a - a2) / (a2 - a1)


def interpolated_height(a_values: list[float] | tuple[float, ...], heights: list[float], a: float) -> float:
    """The relaxed height at ``a``, linear between the scan's neighbours (the final relaxation's
    starting point: it then needs few steps)."""
    order = np.argsort(a_values)
    return float(np.interp(a, np.asarray(a_values)[order], np.asarray(heights)[order]))


def relaxed_bulk(geometry: ElkGeometry, formula: str) -> tuple[Atoms, float]:
    """The ideal 2H (P6_3/mmc) bulk with GEOMETRY.OUT's a, c and relaxed z (units of c)."""
    a, c = lattice_constants(geometry)
    z = float(np.mean(_heights(geometry, formula)))
    return build_bulk_2h(formula, a, c, z), z


@dataclass(frozen=True)
class ScanPoint:
    """One relaxed point of the E(a) scan: what the fit and the next points need of it."""

    a_angstrom: float
    energy_ev: float  # total energy of the relaxed end point
    height_angstrom: float  # the relaxed M-X height d
    optimisation_steps: int
    elk_version: str

    def as_checkpoint(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, data: dict | None) -> "ScanPoint | None":
        """The point a checkpoint holds; None when there is none or it is not a complete point
        with finite numbers (then the point is computed again, never trusted half-read)."""
        if not data:
            return None
        try:
            point = cls(float(data["a_angstrom"]), float(data["energy_ev"]), float(data["height_angstrom"]),
                        int(data["optimisation_steps"]), str(data["elk_version"]))
        except (KeyError, TypeError, ValueError):
            return None
        finite = all(math.isfinite(x) for x in (point.a_angstrom, point.energy_ev, point.height_angstrom))
        return point if finite and point.a_angstrom > 0 and point.height_angstrom > 0 else None


def scan_point_key(elk_in: str, species: list[str]) -> str:
    """The checkpoint key of a scan point: sha256 of its elk.in and species files, so a stored
    point is reused only for exactly the inputs it was computed from."""
    digest = hashlib.sha256(elk_in.encode())
    for text in species:
        digest.update(b"\0" + text.encode())
    return digest.hexdigest()


# -- a monolayer's height by energy (elk_relax_height: energy) --------------------------------
#: E(d): at most this many task-0 points (three around task 2's d, then steps outwards until the
#: parabola's vertex lies among the points it goes through)
MAX_HEIGHT_POINTS = 6


def first_heights(d_forces: float, step: float) -> tuple[float, float, float]:
    """The first three E(d) heights: task 2's d and one ``step`` (A) to either side."""
    if not 0 < step < 0.1:
        raise InputError(f"elk_height_step = {step} A is not in (0, 0.1)", "use e.g. 0.03 (A)")
    return d_forces - step, d_forces, d_forces + step


def _three_around_lowest(heights, energies_ev) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All heights and energies sorted by d, and the slice of the three consecutive points the
    parabola goes through: the lowest and its neighbours, or the three at the edge it lies on."""
    order = np.argsort(heights)
    d, e = np.asarray(heights, float)[order], np.asarray(energies_ev, float)[order]
    low = min(max(int(np.argmin(e)), 1), len(d) - 2)
    return d, e, np.arange(low - 1, low + 2)


def _parabola(d: np.ndarray, e: np.ndarray) -> tuple[float, float, float]:
    c2, c1, c0 = np.polyfit(d, e, 2)
    return float(c2), float(c1), float(c0)


def next_height(heights: list[float] | tuple[float, ...], energies_ev: list[float] | tuple[float, ...],
                step: float) -> float | None:
    """None when the parabola through the lowest E(d) and its neighbours (the three at the edge
    when the lowest is there) is convex with its vertex among those three; else the height one
    ``step`` beyond the scan on the side where the energy falls."""
    d, e, three = _three_around_lowest(heights, energies_ev)
    c2, c1, _ = _parabola(d[three], e[three])
    if c2 > 0 and d[three[0]] <= -c1 / (2 * c2) <= d[three[-1]]:
        return None
    return float(d[0] - step) if e[0] < e[-1] else float(d[-1] + step)


@dataclass(frozen=True)
class HeightFit:
    """The parabola through the lowest E(d) point and its two neighbours, at fixed a and cell."""

    d_angstrom: float  # the vertex
    energy_ev: float  # E at the vertex
    curvature_ev_a2: float  # d2E/dd2 of the parabola (both chalcogens move: the breathing mode)
    d_scan_angstrom: tuple[float, ...]
    energies_ev: tuple[float, ...]

    def as_output(self) -> dict:
        return {"d_angstrom": list(self.d_scan_angstrom), "energy_ev": list(self.energies_ev),
                "d_fit_angstrom": self.d_angstrom, "energy_fit_ev": self.energy_ev,
                "curvature_ev_per_a2": self.curvature_ev_a2}


def fit_height(heights: list[float] | tuple[float, ...], energies_ev: list[float] | tuple[float, ...]) -> HeightFit:
    """The minimum of E(d): the vertex of the parabola through the lowest point and its
    neighbours (the three at the edge when the lowest is there).  Refuses a non-positive
    curvature and a vertex outside those three points (extrapolated: scan further first,
    :func:`next_height`)."""
    if len(heights) != len(energies_ev) or len(heights) < 3:
        raise InputError(f"E(d) fit with {len(heights)} heights and {len(energies_ev)} energies",
                         "give the same number of each, at least 3")
    d, e, three = _three_around_lowest(heights, energies_ev)
    c2, c1, c0 = _parabola(d[three], e[three])
    lo, hi = d[three[0]], d[three[-1]]
    fix = "read the E(d) points' INFO.OUT (relax step, elk/height*/); or elk_relax_height: forces"
    if c2 <= 0:
        raise CalculationFailed(f"relax: E(d) through d = {lo:.4f}-{hi:.4f} A is not convex", fix)
    vertex = -c1 / (2 * c2)
    if not lo <= vertex <= hi:
        raise CalculationFailed(f"relax: the E(d) minimum {vertex:.4f} A lies outside the points "
                                f"{lo:.4f}-{hi:.4f} A", fix)
    return HeightFit(vertex, c0 + c1 * vertex + c2 * vertex ** 2, 2 * c2,
                     tuple(float(x) for x in d), tuple(float(x) for x in e))
