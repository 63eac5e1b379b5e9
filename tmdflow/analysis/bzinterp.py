"""Interpolation of the spin-orbit map: smooth Fig. 3 from the wedge a run computed.

The map step computes the bands on the grid points (i/N, j/N) of the irreducible wedge
(:mod:`tmdflow.analysis.bzmap`).  Iso-energy lines drawn through an N x N grid are polygons at
N = 18, and every doubling of N costs ~4x the pw.x time (docs/performance.md).  This module
interpolates instead, and only quantities that are smooth functions of k:

* the pair members **by spin**, E_up(k) and E_down(k) (the member with <sigma_z> > 0 and the one
  with <sigma_z> < 0), not the energy-ordered v1, v2: the energy-ordered bands have a kink on
  every Gamma-M line, where the pair crosses, and no series (or spline) follows a kink;
* from the full periodic N x N grid, unfolded from the wedge by the layer's symmetry (time
  reversal and the Gamma-M mirrors swap up and down, C3 and the Gamma-K mirrors keep them);
* by the method measured to be accurate for each pair (:func:`interpolate`):

  - the valence pair locally, on the K-centred triangle bounded by Gamma-M lines
    (:class:`TrianglePair`): inside it each member is one band that no Gamma-M mirror image
    enters;
  - the conduction pair as a Fourier series E(k) = sum_R c(R) exp(2 pi i k.R) over the lattice
    vectors R of the N x N supercell's Wigner-Seitz cell (:class:`FourierBand`; each R on the
    cell's boundary shared equally among its images): the real-space form of a Wannier
    interpolation of one isolated band, without its gauge problem because a single band's
    energy is gauge-free.

  Both pass through every computed point exactly.

The uppermost valence band is then max(E_up, E_down) of the valence pair, with the spin of the
larger, and Delta(k) = E_up - E_down of each pair (docs/physics.md, "Delta(k) away from K").
Where this is accurate is measured, not assumed: :func:`interpolation_errors` compares the
interpolation with directly computed points (docs/performance.md records the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import BandData
from ..errors import AnalysisError
from .bzmap import SplittingMap, k_operations, on_wedge_grid, unfold, unfold_wedge, wedge_points

PAIRS = {"uvb": -2, "lcb": 0}  # lower band of each pair, relative to the number of occupied bands
NEXT_VALENCE_PAIR = {"nvb": -4}  # the pair below the UVB: the valence pair's two-level partner (TrianglePair)


@dataclass(frozen=True)
class SpinPairs:
    """E_up and E_down (eV, VBM = 0) of the valence and conduction pairs at k-points (crystal)."""

    kpoints_crystal: np.ndarray  # (m, 2)
    up: dict[str, np.ndarray]  # pair name -> (m,)
    down: dict[str, np.ndarray]


def spin_pairs(bands: BandData, vbm_ev: float | None = None, pairs: dict[str, int] = PAIRS) -> SpinPairs:
    """Split each pair of a spin-orbit run with <sigma_z> into its up and down member; energies
    relative to ``vbm_ev`` (absolute eV; default: the run's own highest valence level); ``pairs``:
    name -> lower band of the pair relative to the number of occupied bands."""
    if bands.sigma_z is None or not bands.spinor:
        raise AnalysisError("the map needs a spin-orbit run with <sigma_z>", "run the soc_map step (bands.x)")
    nocc = bands.n_occupied
    e, sz = np.asarray(bands.eigenvalues), np.asarray(bands.sigma_z)
    vbm = float(e[:, nocc - 1].max()) if vbm_ev is None else float(vbm_ev)
    up, down = {}, {}
    for name, offset in pairs.items():
        lo = nocc + offset
        first_is_up = sz[:, lo] >= sz[:, lo + 1]
        up[name] = np.where(first_is_up, e[:, lo], e[:, lo + 1]) - vbm
        down[name] = np.where(first_is_up, e[:, lo + 1], e[:, lo]) - vbm
    return SpinPairs(np.asarray(bands.kpoints_crystal)[:, :2], up, down)


def grid_size(kpoints_crystal: np.ndarray) -> int:
    """The N of a wedge run on the points (i/N, j/N)."""
    k = np.asarray(kpoints_crystal)[:, :2]
    for n in range(3, 241, 3):
        if np.allclose(k * n, np.round(k * n), atol=1e-4):
            return n
    raise AnalysisError("the map's k-points are not the points (i/N, j/N) of a wedge grid",
                        "interpolate only a map made by the soc_map step")


def _crystal_operations(reciprocal_cell: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The 12 operations of :func:`bzmap.k_operations` as integer matrices on crystal (u, v)."""
    b = np.asarray(reciprocal_cell)[:2, :2]
    ops = []
    for op in k_operations(reciprocal_cell):
        # k_cart = u @ b; k'_cart = k_cart @ M.T  ->  u' = u @ (b @ M.T @ inv(b))
        m = b @ op.matrix.T @ np.linalg.inv(b)
        ops.append((np.round(m).astype(int), op.sigma_sign))
    return ops


def full_grid(bands: BandData, pairs: dict[str, int] = PAIRS) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """E_up, E_down of the pairs (default: both of Fig. 3) on the whole N x N grid, indexed
    [i, j] for k = (i/N, j/N)."""
    n = grid_size(bands.kpoints_crystal)
    members = spin_pairs(bands, pairs=pairs)
    idx = np.round(members.kpoints_crystal * n).astype(int)
    up = {name: np.full((n, n), np.nan) for name in pairs}
    down = {name: np.full((n, n), np.nan) for name in pairs}
    for matrix, sign in _crystal_operations(bands.reciprocal_cell):
        ij = (idx @ matrix) % n
        for name in pairs:
            same, other = ((members.up[name], members.down[name]) if sign > 0
                           else (members.down[name], members.up[name]))
            up[name][ij[:, 0], ij[:, 1]] = same
            down[name][ij[:, 0], ij[:, 1]] = other
    if any(np.isnan(a).any() for a in (*up.values(), *down.values())):
        raise AnalysisError(f"the wedge does not cover the {n} x {n} grid under the layer's symmetry",
                            "interpolate only a monolayer map made by the soc_map step")
    return n, up, down


class FourierBand:
    """One band on an N x N grid as a Fourier series over the Wigner-Seitz lattice vectors."""

    def __init__(self, grid: np.ndarray, reciprocal_cell: np.ndarray):
        n = grid.shape[0]
        coeff = np.fft.fft2(grid) / n**2  # c[p, q] for R = (p, q) modulo N
        b = np.asarray(reciprocal_cell)[:2, :2]
        a = 2 * np.pi * np.linalg.inv(b).T  # rows a1, a2 (1/Angstrom -> Angstrom)
        shifts = np.array([(m1, m2) for m1 in range(-2, 3) for m2 in range(-2, 3)])
        vectors, weights = [], []
        for p in range(n):
            for q in range(n):
                images = np.array([p, q]) + n * shifts
                length = np.linalg.norm(images @ a, axis=1)
                nearest = images[length < length.min() * (1 + 1e-8) + 1e-9]
                for r in nearest:
                    vectors.append(r)
                    weights.append(coeff[p, q] / len(nearest))
        self.vectors = np.array(vectors, float)
        self.weights = np.array(weights)

    def __call__(self, kpoints_crystal: np.ndarray) -> np.ndarray:
        phase = np.exp(2j * np.pi * (np.asarray(kpoints_crystal)[:, :2] @ self.vectors.T))
        return np.real(phase @ self.weights)


class TrianglePair:
    """One pair, E_up and E_down, interpolated locally on the K-centred triangle.

    In crystal coordinates the triangle u, v >= 0, u + v <= 1 (corners Gamma, Gamma', Gamma'';
    K = (1/3, 1/3) in its centre, the M points at its edges' midpoints) is bounded by Gamma-M
    lines only, where the pair is degenerate and Delta changes sign.  Inside it the upper member
    of the valence pair is one spin throughout, a smooth band; continued across an edge it becomes
    the *other* member seen through the mirror, which for WSe2 anticrosses a lower band of the same
    spin one grid step off the Gamma-M line near M (measured at the paper preset: E_down at
    j = 0..3 steps from the line -1.136, -1.215, -1.175, -1.094 eV).  A Fourier series over the
    whole zone carries that feature into the window of the contours (2.4 meV at the 36 grid, 3.0
    at 48); an interpolant that only sees the triangle does not.  Here each member is a
    polyharmonic (r^5) radial-basis interpolant with a cubic polynomial on the ``neighbours``
    grid points nearest the point asked for (scipy.interpolate.RBFInterpolator): it passes
    through every grid point and is exact for cubic polynomials.  The other half of the unit
    cell (u + v > 1, the K' triangle) is k -> -k of this one with the spins swapped (time
    reversal).

    With ``below`` (the next pair's E_up, E_down grids) the anticrossing itself is treated as a
    two-level one: per spin, the valence member E_v and the next pair's member E_n of the same
    spin are the two eigenvalues of a smooth 2 x 2 problem, whose trace S = E_v + E_n and squared
    difference P = (E_v - E_n)^2 stay smooth where E_v turns; E_v = S/2 + sqrt(P)/2 (E_v is the
    upper of the two by band order).  The next pair has turns of its own with deeper bands, so
    this form is used only where the two are close: weight 1 below a gap sqrt(P) of
    ``TWO_LEVEL_GAP_EV[0]``, 0 above ``[1]``, smoothstep between.  Chosen on the two fixtures'
    48 check points, validated on 32 independent points of the WSe2 paper map
    (docs/performance.md): within the contours' window 0.61 -> 0.08 meV, below it 18.4 -> 4.4 meV."""

    #: grid points each local interpolant uses (about three rings around the point)
    NEIGHBOURS = 30
    #: gap to the next same-spin band (eV) below which the two-level form is used fully / above
    #: which not at all
    TWO_LEVEL_GAP_EV = (0.3, 0.6)

    def __init__(self, up_grid: np.ndarray, down_grid: np.ndarray, reciprocal_cell: np.ndarray,
                 below: tuple[np.ndarray, np.ndarray] | None = None):
        n = up_grid.shape[0]
        ij = np.array([(i, j) for i in range(n + 1) for j in range(n + 1 - i)])
        self._b = np.asarray(reciprocal_cell)[:2, :2]
        points = (ij / n) @ self._b  # Cartesian: the basis is isotropic there
        on_triangle = (lambda grid: grid[ij[:, 0] % n, ij[:, 1] % n])
        self._members = tuple(self._local(points, on_triangle(grid)) for grid in (up_grid, down_grid))
        self._two_level = None if below is None else tuple(
            (self._local(points, on_triangle(v + w)), self._local(points, on_triangle((v - w) ** 2)))
            for v, w in zip((up_grid, down_grid), below))

    def _local(self, points: np.ndarray, values: np.ndarray):
        from scipy.interpolate import RBFInterpolator

        return RBFInterpolator(points, values, neighbors=min(self.NEIGHBOURS, len(points)), kernel="quintic", degree=3)

    def _member(self, index: int, q: np.ndarray) -> np.ndarray:
        direct = self._members[index](q)
        if self._two_level is None:
            return direct
        trace, square = (f(q) for f in self._two_level[index])
        gap = np.sqrt(np.maximum(square, 0.0))
        lo, hi = self.TWO_LEVEL_GAP_EV
        w = np.clip((hi - gap) / (hi - lo), 0.0, 1.0)
        w = w * w * (3.0 - 2.0 * w)
        return w * (trace + gap) / 2.0 + (1.0 - w) * direct

    def __call__(self, kpoints_crystal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.asarray(kpoints_crystal)[:, :2] % 1.0
        k_prime = k.sum(axis=1) > 1.0 + 1e-12
        q = np.where(k_prime[:, None], 1.0 - k, k) @ self._b
        up, down = (self._member(i, q) for i in (0, 1))
        return np.where(k_prime, down, up), np.where(k_prime, up, down)


class FourierPair:
    """One pair, E_up and E_down, each a :class:`FourierBand` over the whole zone."""

    def __init__(self, up_grid: np.ndarray, down_grid: np.ndarray, reciprocal_cell: np.ndarray):
        self._members = (FourierBand(up_grid, reciprocal_cell), FourierBand(down_grid, reciprocal_cell))

    def __call__(self, kpoints_crystal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._members[0](kpoints_crystal), self._members[1](kpoints_crystal)


@dataclass(frozen=True)
class InterpolatedPairs:
    """The four spin-resolved bands interpolated from a map of N x N (:func:`interpolate`)."""

    n: int
    pairs: dict[str, TrianglePair | FourierPair]
    reciprocal_cell: np.ndarray
    vbm_ev: float  # the energy zero: the map's highest valence level (absolute, eV)

    def at(self, kpoints_crystal: np.ndarray) -> SpinPairs:
        k = np.asarray(kpoints_crystal)[:, :2]
        values = {name: pair(k) for name, pair in self.pairs.items()}
        return SpinPairs(k, {name: v[0] for name, v in values.items()}, {name: v[1] for name, v in values.items()})


def interpolate(bands: BandData) -> InterpolatedPairs:
    """The four spin-resolved bands interpolated from a map on the points of one wedge grid, each
    pair by the method measured to be accurate for it (docs/performance.md, "Fig. 3"): the valence
    pair locally on the K triangle with the next pair as its two-level partner near the
    anticrossing (WSe2 paper preset, 36 grid: UVB 0.09 meV, its Delta 0.91 meV within 0.9 eV of the
    VBM at the run's checks, 0.05 / 0.08 at 32 independent points; a Fourier series: 2.4 / 2.4),
    the conduction pair by Fourier (its Delta where spin-polarised: 0.55 / 0.60 meV at the runs'
    checks against 1.2 / 7.2 locally, but 7.9 near Gamma-Q at the independent points, where no
    method tried is within 1 meV)."""
    n, up, down = full_grid(bands, {**PAIRS, **NEXT_VALENCE_PAIR})
    cell = np.asarray(bands.reciprocal_cell)
    vbm = float(np.asarray(bands.eigenvalues)[:, bands.n_occupied - 1].max())
    return InterpolatedPairs(n, {"uvb": TrianglePair(up["uvb"], down["uvb"], cell, below=(up["nvb"], down["nvb"])),
                                 "lcb": FourierPair(up["lcb"], down["lcb"], cell)}, cell, vbm)


def splitting_map(pairs: SpinPairs, reciprocal_cell: np.ndarray,
                  lcb_min_abs_sigma_z: np.ndarray | None = None) -> SplittingMap:
    """The unfolded :class:`SplittingMap` from spin-resolved pairs on wedge points: the UVB is
    the higher member of the valence pair (its spin the sign of <sigma_z>, +-1), Delta = up - down;
    ``lcb_min_abs_sigma_z`` at the same points (:func:`conduction_polarisation`), if known."""
    uv, dv = pairs.up["uvb"], pairs.down["uvb"]
    return unfold_wedge(pairs.kpoints_crystal @ np.asarray(reciprocal_cell)[:2, :2], np.maximum(uv, dv),
                        np.where(uv >= dv, 1.0, -1.0), (uv - dv) * 1000.0,
                        (pairs.up["lcb"] - pairs.down["lcb"]) * 1000.0, reciprocal_cell, lcb_min_abs_sigma_z)


def conduction_polarisation(grid: BandData, kpoints_crystal: np.ndarray) -> np.ndarray:
    """The smaller |<sigma_z>| of the lowest conduction pair at wedge points ``kpoints_crystal``,
    linear between the map's grid points (``grid``: a run on one wedge grid).  Not an
    interpolation to 1 meV: it only tells where the pair is spin-polarised (>= POLARISED_SIGMA_Z),
    i.e. where its Delta is a spin splitting, to the grid's resolution."""
    from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

    b = np.asarray(grid.reciprocal_cell)[:2, :2]
    nocc = grid.n_occupied
    points = np.asarray(grid.kpoints_crystal)[:, :2] @ b
    values = np.abs(np.asarray(grid.sigma_z)[:, nocc:nocc + 2]).min(axis=1)
    q = np.asarray(kpoints_crystal)[:, :2] @ b
    linear = LinearNDInterpolator(points, values)(q)
    # points on the wedge's edges can fall a rounding error outside its triangulation
    return np.where(np.isnan(linear), NearestNDInterpolator(points, values)(q), linear)


def interpolated_map(bands: BandData, points: int) -> SplittingMap:
    """Fig. 3's map on the wedge of a ``points`` x ``points`` grid, interpolated from ``bands``."""
    fit = interpolate(bands)
    return splitting_map(fit.at(wedge_points(points)), fit.reciprocal_cell)


#: the energy window of Fig. 3's iso-energy lines (drawn at 0.2, 0.5, 0.8 eV below the VBM)
CONTOUR_WINDOW_EV = 0.9
#: a pair's Delta is a spin splitting where both members are spin-polarised (as in analysis.checks)
POLARISED_SIGMA_Z = 0.8


@dataclass(frozen=True)
class InterpolationErrors:
    """|interpolated - direct| in meV at points computed directly (the map run's check points)."""

    n_points: int
    window_ev: float  # the contour window: direct UVB within this of the VBM
    max_uvb_window_mev: float  # the energy-ordered top valence band, in the window (the drawn lines)
    max_delta_uvb_window_mev: float  # Delta of the valence pair, in the window
    max_delta_lcb_polarised_mev: float | None  # Delta of the conduction pair where both |<sigma_z>| >= 0.8
    max_uvb_mev: float  # anywhere
    max_delta_mev: dict[str, float]  # anywhere, per pair
    rms_uvb_mev: float

    def as_dict(self) -> dict[str, float]:
        """The stored form (task outputs ``wannier_map_errors_mev``)."""
        out = {"points": float(self.n_points), "uvb_energy_window": self.max_uvb_window_mev,
               "uvb_delta_window": self.max_delta_uvb_window_mev, "uvb_energy": self.max_uvb_mev,
               **{f"{name}_delta": v for name, v in self.max_delta_mev.items()}}
        if self.max_delta_lcb_polarised_mev is not None:
            out["lcb_delta_polarised"] = self.max_delta_lcb_polarised_mev
        return out

    def summary(self) -> str:
        lcb = ("" if self.max_delta_lcb_polarised_mev is None
               else f", LCB Δ ≤ {self.max_delta_lcb_polarised_mev:.1f} where spin-polarised")
        return (f"{self.n_points} direct check points: UVB ≤ {self.max_uvb_window_mev:.1f} meV and its Δ ≤ "
                f"{self.max_delta_uvb_window_mev:.1f} meV within {self.window_ev:g} eV of the VBM{lcb}")


def interpolation_errors(fit: InterpolatedPairs, direct: BandData,
                         window_ev: float = CONTOUR_WINDOW_EV) -> InterpolationErrors:
    """Compare the interpolation with points computed directly in the same run as the map (so
    both share its energy zero, ``fit.vbm_ev``): the map step's check points (:func:`split_map`)."""
    ref = spin_pairs(direct, fit.vbm_ev)
    got = fit.at(ref.kpoints_crystal)
    top_ref = np.maximum(ref.up["uvb"], ref.down["uvb"])
    err_top = np.abs(np.maximum(got.up["uvb"], got.down["uvb"]) - top_ref) * 1000.0
    err_delta = {name: np.abs((got.up[name] - got.down[name]) - (ref.up[name] - ref.down[name])) * 1000.0
                 for name in PAIRS}
    window = top_ref > -window_ev
    nocc = direct.n_occupied
    polarised = np.all(np.abs(np.asarray(direct.sigma_z)[:, nocc:nocc + 2]) >= POLARISED_SIGMA_Z, axis=1)
    worst = (lambda a, m: float(a[m].max()) if m.any() else 0.0)
    return InterpolationErrors(
        len(top_ref), window_ev, worst(err_top, window), worst(err_delta["uvb"], window),
        worst(err_delta["lcb"], polarised) if polarised.any() else None, float(err_top.max()),
        {name: float(v.max()) for name, v in err_delta.items()}, float(np.sqrt(np.mean(err_top**2))))


def split_map(bands: BandData, n: int) -> tuple[BandData, BandData | None]:
    """The map run's grid points and its check points (None when it has none: maps made before
    the check points existed)."""
    on_grid = on_wedge_grid(bands.kpoints_crystal, n)
    if on_grid.sum() != len(wedge_points(n)):
        raise AnalysisError(f"the map has {on_grid.sum()} of the {len(wedge_points(n))} points of the {n} x {n} wedge grid",
                            "pass the map_points it was run with (its task document's preset)")
    return bands.take(on_grid), (bands.take(~on_grid) if (~on_grid).any() else None)


@dataclass(frozen=True)
class MapInterpolation:
    """Fig. 3's map: the direct points, the interpolated fine map and its measured error."""

    direct: SplittingMap  # the computed grid, unfolded
    fine: SplittingMap  # the interpolation on a ``fine_points`` x ``fine_points`` grid
    points: int
    fine_points: int
    errors: InterpolationErrors | None  # at the run's check points; None: not validated (old map)
    method: str = "pairs"  # "pairs": interpolated from the grid pair by pair; "wannier": the Wannier model


def unhatched_regions(m: SplittingMap, window_ev: float = CONTOUR_WINDOW_EV,
                      valence_validated: bool = False) -> dict[str, np.ndarray]:
    """Where Fig. 3 leaves each panel unhatched, per map point; the criteria differ by pair.
    The valence pair: where the UVB lies within ``window_ev`` of the VBM -- there its Delta is
    validated to 1 meV at every check point measured; below it the lower member anticrosses the
    next band near M and the error reaches 4.4 meV even with the two-level treatment
    (docs/performance.md).  The conduction pair: where both of its states are spin-polarised,
    i.e. where its Delta is a spin splitting at all (c1, c2 are spin-mixed near Gamma where they
    meet c3, and a Kramers doublet at M) -- *not* a 1 meV guarantee: near Gamma-Q it is off by up
    to 7.9 meV (WSe2, paper preset), so its panel states only what its run's check points measured.
    ``valence_validated`` (:func:`valence_validated_everywhere`): the valence panel is not hatched."""
    hatched = {name: np.asarray(field) < level
               for name, (field, level) in hatch_fields(m, window_ev, valence_validated).items()}
    return {name: ~hatched[name] if name in hatched else np.ones(len(m.k_cartesian), bool) for name in PAIRS}


def valence_validated_everywhere(m: "MapInterpolation") -> bool:
    """Whether the drawn valence map needs no window: drawn from the Wannier model (which carries
    the anticrossing near M) and within 1 meV at every check point of its run, below the window too."""
    return m.method == "wannier" and m.errors is not None and m.errors.max_delta_mev["uvb"] <= 1.0


def hatch_fields(m: SplittingMap, window_ev: float = CONTOUR_WINDOW_EV,
                 valence_validated: bool = False) -> dict[str, tuple[np.ndarray, float]]:
    """The criteria of :func:`unhatched_regions` as (smooth field, level) per pair, hatched where
    field < level -- the form Fig. 3 draws its hatching and outlines from: the UVB energy against
    -``window_ev``; the conduction pair's smaller |<sigma_z>| against POLARISED_SIGMA_Z (left out
    when the map does not carry it)."""
    fields = {} if valence_validated else {"uvb": (np.asarray(m.uvb_energy_ev), -window_ev)}
    if m.lcb_min_abs_sigma_z is not None:
        fields["lcb"] = (np.asarray(m.lcb_min_abs_sigma_z), POLARISED_SIGMA_Z)
    return fields


#: the drawn map's grid: FINE_FACTOR x the computed one, at most FINE_MAX
FINE_FACTOR, FINE_MAX = 4, 144


def fine_grid_size(n: int) -> int:
    """The N of the drawn map of a soc_map run on the n x n grid."""
    return min(FINE_FACTOR * n, max(FINE_MAX, n))


@dataclass(frozen=True)
class TabulatedPairs:
    """Spin pairs looked up from bands computed at the very k-points asked for (the Wannier
    model's bands at the direct points): the ``at`` of :class:`InterpolatedPairs`, for
    :func:`interpolation_errors`."""

    bands: BandData
    vbm_ev: float

    def at(self, kpoints_crystal: np.ndarray) -> SpinPairs:
        return spin_pairs(self.bands.take(_rows(self.bands, kpoints_crystal)), self.vbm_ev)


def wannier_errors(model_bands: BandData, direct: BandData, n: int) -> "InterpolationErrors":
    """The Wannier model alone (its bands: the fine wedge, then the soc_map run's points) against
    every point the soc_map run computed (wedge and checks), energies from the run's VBM."""
    vbm = float(np.asarray(direct.eigenvalues)[:, direct.n_occupied - 1].max())
    return interpolation_errors(TabulatedPairs(model_bands, vbm), direct)


@dataclass(frozen=True)
class CorrectedPairs:
    """The Wannier model plus the Fourier series of its residual on the map's grid: E(k) =
    E_model(k) + r(k), r = E_direct - E_model on the N x N grid, per pair member by spin.  The
    model carries the crossings and anticrossings (a Hamiltonian has no kinks); the residual --
    the model's own error, ~1-5 meV and smooth -- is what the grid interpolates, so at the grid's
    points the map is the direct calculation and between them its error is a small fraction of
    the residual's (WSe2 paper preset, 12 x 12 model, 36 grid, 32 independent points: Delta
    within 0.36 meV (UVB) and 0.16 meV (LCB where spin-polarised), the model alone 1.14 / 2.14;
    docs/performance.md)."""

    model: TabulatedPairs
    residual: dict[str, tuple[FourierBand, FourierBand]]
    reciprocal_cell: np.ndarray
    vbm_ev: float  # the direct run's: the energy zero of what ``at`` returns

    def at(self, kpoints_crystal: np.ndarray) -> SpinPairs:
        k = np.asarray(kpoints_crystal)[:, :2]
        m = self.model.at(k)
        return SpinPairs(k, {name: m.up[name] + r[0](k) for name, r in self.residual.items()},
                         {name: m.down[name] + r[1](k) for name, r in self.residual.items()})


def wannier_corrected(grid: BandData, model: BandData) -> CorrectedPairs:
    """:class:`CorrectedPairs` from a map run's wedge grid and the model's bands (at least at the
    grid's points; wherever else ``at`` will be asked)."""
    at_grid = model.take(_rows(model, grid.kpoints_crystal))
    vbm_model = float(np.asarray(at_grid.eigenvalues)[:, at_grid.n_occupied - 1].max())
    _, up_d, down_d = full_grid(grid)
    _, up_m, down_m = full_grid(at_grid)
    cell = np.asarray(grid.reciprocal_cell)
    residual = {name: (FourierBand(up_d[name] - up_m[name], cell), FourierBand(down_d[name] - down_m[name], cell))
                for name in PAIRS}
    vbm = float(np.asarray(grid.eigenvalues)[:, grid.n_occupied - 1].max())
    return CorrectedPairs(TabulatedPairs(model, vbm_model), residual, cell, vbm)


def _rows(bands: BandData, kpoints_crystal: np.ndarray) -> np.ndarray:
    """The row of ``bands`` computed at each asked-for point (in-plane crystal coordinates, no
    periodic folding: the model's bands are evaluated at the very points asked for).  A k-d tree
    keeps this O((n + m) log m) for the fine map's tens of thousands of points."""
    from scipy.spatial import cKDTree  # scipy is imported where it is used, as elsewhere in this module

    have = np.asarray(bands.kpoints_crystal)[:, :2]
    want = np.asarray(kpoints_crystal)[:, :2]
    distance, rows = cKDTree(have).query(want, p=1)
    if np.any(distance > 1e-6):
        raise AnalysisError("the model's bands were not computed at the points asked for",
                            "run the wannier_map step again (it evaluates the model at soc_map's points)")
    return np.asarray(rows, dtype=int)


def map_for_figure(bands: BandData, n: int, model: BandData | None = None) -> MapInterpolation:
    """Split a soc_map run, interpolate its grid to a fine one, measure the error at its checks.
    With the Wannier model's bands (``model``: the wannier_map step's, on the fine wedge then at
    the run's points) the fine map is the model corrected by its residual on the grid
    (:class:`CorrectedPairs`), validated at the run's check points like the other method."""
    grid, checks = split_map(bands, n)
    fine_n = fine_grid_size(n)
    fine_k = wedge_points(fine_n)
    if model is not None:
        fit = wannier_corrected(grid, model)
        on_fine = model.take(_rows(model, fine_k))
        nocc = on_fine.n_occupied
        polarisation = np.abs(np.asarray(on_fine.sigma_z)[:, nocc:nocc + 2]).min(axis=1)
        fine = splitting_map(fit.at(fine_k), fit.reciprocal_cell, polarisation)
        return MapInterpolation(unfold(grid), fine, n, fine_n,
                                interpolation_errors(fit, checks) if checks is not None else None, "wannier")
    fit = interpolate(grid)
    fine = splitting_map(fit.at(fine_k), fit.reciprocal_cell, conduction_polarisation(grid, fine_k))
    return MapInterpolation(unfold(grid), fine, n, fine_n,
                            interpolation_errors(fit, checks) if checks is not None else None)
