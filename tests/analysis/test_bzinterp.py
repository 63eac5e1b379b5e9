"""Fig. 3's interpolation of the spin-resolved map (tmdflow.analysis.bzinterp), on two real 36 x 36
maps with points between their grid points computed directly by pw.x + bands.x
(tests/fixtures/README.md): WS2 at the test preset with 40 such points (ws2_test_map36) and WSe2
at the paper preset with the 8 its soc_map step ran and 32 independent ones, chosen before they
were computed (wse2_paper_map36).

Tolerances: the interpolation's errors are measured numbers (docs/performance.md): at the 36 grid
the top valence band is off by <= 0.2 meV and its Delta by <= 0.3 (WS2) / 0.91 (WSe2) meV within
0.9 eV of the VBM (Fig. 3's contour window); the tests allow 1 meV, the issue's criterion.  A
Fourier series of the valence pair over the whole zone misses it for WSe2 (2.4 meV): the reason
the valence pair is interpolated on the K triangle (TrianglePair)."""

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import QE67
from tmdflow.analysis.bzinterp import (FourierBand, FourierPair, TrianglePair, conduction_polarisation, full_grid,
                                       interpolate, interpolation_errors, map_for_figure, split_map, spin_pairs,
                                       splitting_map, unhatched_regions)
from tmdflow.analysis.bzmap import check_points, on_wedge_grid, wedge_points
from tmdflow.bands import BandData
from tmdflow.calculators.espresso.parsers.bandsx import parse_bandsx_sigma_z
from tmdflow.calculators.espresso.parsers.xml import parse_pw_xml
from tmdflow.errors import AnalysisError

MAP36 = QE67 / "ws2_test_map36"
PAPER_WSE2 = QE67 / "wse2_paper_map36"


def _read(step: str, directory: Path = MAP36) -> BandData:
    b = parse_pw_xml(directory / f"{step}.xml").bands
    bands = BandData(b.kpoints_crystal, b.eigenvalues, b.n_electrons, b.spinor, b.reciprocal_cell)
    return bands.with_sigma_z(parse_bandsx_sigma_z(directory / f"{step}_sigma.dat", bands.eigenvalues))


@pytest.fixture(scope="module")
def map36():
    return _read("soc_map")


@pytest.fixture(scope="module")
def checks36():
    return _read("checks")


def _distinct_points(m) -> int:
    """Points of a map modulo the reciprocal lattice."""
    crystal = np.linalg.solve(m.reciprocal_cell[:2, :2].T, m.k_cartesian.T).T
    return len(np.unique(np.round(crystal % 1.0, 5) % 1.0, axis=0))


def test_fixture_is_the_wedge_and_its_check_points(map36, checks36):
    assert np.allclose(map36.kpoints_crystal, wedge_points(36), atol=1e-8)
    assert np.allclose(checks36.kpoints_crystal, check_points(36, 40), atol=1e-8)
    assert not on_wedge_grid(checks36.kpoints_crystal, 36).any()  # all between grid points


def test_fourier_series_of_a_band_limited_function_is_exact():
    """A function with Fourier components inside the 12 x 12 supercell is reproduced everywhere."""
    a = 3.18
    cell = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, 20.0]])
    recip = 2 * np.pi * np.linalg.inv(cell).T

    def f(k):
        u, v = k[:, 0], k[:, 1]
        return (np.cos(2 * np.pi * u) + np.cos(2 * np.pi * v) + np.cos(2 * np.pi * (u + v))
                + 0.3 * np.cos(2 * np.pi * (2 * u - v)) + 0.1 * np.sin(2 * np.pi * (u + 2 * v)))

    grid = np.array([[f(np.array([[i / 12, j / 12]]))[0] for j in range(12)] for i in range(12)])
    k = np.random.default_rng(1).random((40, 2))
    assert np.abs(FourierBand(grid, recip)(k) - f(k)).max() < 1e-12


def test_triangle_interpolant_is_exact_for_a_cubic_and_swaps_spins_at_minus_k():
    """The local interpolant reproduces a cubic polynomial of k on the K triangle, and beyond it
    (u + v > 1, the K' triangle) answers k -> -k with the members swapped (time reversal)."""
    a = 3.18
    cell = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, 20.0]])
    recip = 2 * np.pi * np.linalg.inv(cell).T

    def cubic(k):  # a cubic (in crystal or Cartesian k) with one value at the corners Gamma, Gamma', Gamma''
        u, v = k[:, 0], k[:, 1]
        w = 1.0 - u - v
        return 0.3 + 2.0 * u * v * w + 0.4 * (u * v + v * w + w * u) - 0.7 * u * u * v

    n = 12
    grid = np.array([[cubic(np.array([[i / n, j / n]]))[0] for j in range(n)] for i in range(n)])
    pair = TrianglePair(grid, grid - 0.1, recip)  # only the triangle's points are read: the cubic holds there
    rng = np.random.default_rng(2)
    k = rng.random((60, 2))
    k = k[k.sum(axis=1) < 1.0]
    up, down = pair(k)
    assert np.abs(up - cubic(k)).max() < 1e-9 and np.abs(down - (cubic(k) - 0.1)).max() < 1e-9
    up_minus, down_minus = pair(-k)
    assert np.allclose(up_minus, down) and np.allclose(down_minus, up)


def test_series_passes_through_every_computed_point(map36):
    fit = interpolate(map36)
    got = fit.at(map36.kpoints_crystal)
    ref = spin_pairs(map36)
    for name in ("uvb", "lcb"):
        # 1 micro-eV: the XML's precision, and wedge-edge points that the symmetry maps onto each other
        assert np.abs(got.up[name] - ref.up[name]).max() < 1e-6
        assert np.abs(got.down[name] - ref.down[name]).max() < 1e-6


def test_unfolded_grid_obeys_time_reversal(map36):
    """E_up(k) = E_down(-k): the whole grid follows from the wedge with spins swapped by k -> -k."""
    n, up, down = full_grid(map36)
    assert n == 36
    minus = (-np.arange(n)) % n
    for name in ("uvb", "lcb"):
        assert np.allclose(up[name], down[name][np.ix_(minus, minus)], atol=1e-12)


def test_interpolation_from_the_36_grid_is_within_1_mev(map36, checks36):
    e = interpolation_errors(interpolate(map36), checks36)
    assert e.n_points == 40 and e.window_ev == 0.9
    assert e.max_uvb_window_mev < 1.0  # measured 0.36
    assert e.max_delta_uvb_window_mev < 1.0  # measured 0.78
    assert e.max_delta_lcb_polarised_mev < 1.0  # measured 0.55
    # where the lowest conduction pair is spin-mixed near Gamma (|<sigma_z>| 0.1-0.6, a crossing
    # with c3) its "Delta" is not smooth: 10.6 meV there, which the summary does not hide
    assert e.max_delta_mev["lcb"] > 1.0
    assert "40 direct check points" in e.summary()


def test_the_18_grid_is_not_enough(map36):
    """Fit on the 18 x 18 sub-grid, compare with the 36 grid's other points: misses 1 meV."""
    on18 = on_wedge_grid(map36.kpoints_crystal, 18)
    e = interpolation_errors(interpolate(map36.take(on18)), map36.take(~on18))
    assert e.max_uvb_window_mev > 1.0 and e.max_delta_uvb_window_mev > 2.0  # measured 1.8, 8.2 within 0.9 eV


def test_wse2_at_the_paper_preset_is_within_1_mev():
    """The paper preset's own map of WSe2 (127 wedge points + the 8 check points its soc_map step
    ran): within 1 meV on the K triangle, where a Fourier series of the valence pair over the
    zone is not (the mirror image of a lower band's anticrossing near M enters it)."""
    grid, checks = split_map(_read("soc_map", PAPER_WSE2), 36)
    fit = interpolate(grid)
    e = interpolation_errors(fit, checks)
    assert e.n_points == 8
    assert e.max_uvb_window_mev < 1.0  # measured 0.09
    assert e.max_delta_uvb_window_mev < 1.0  # measured 0.91
    _, up, down = full_grid(grid)
    fourier = FourierPair(up["uvb"], down["uvb"], fit.reciprocal_cell)(checks.kpoints_crystal)
    ref = spin_pairs(checks, fit.vbm_ev)
    top = np.maximum(ref.up["uvb"], ref.down["uvb"])
    assert np.abs(np.maximum(*fourier) - top)[top > -0.9].max() * 1000 > 2.0  # measured 2.4


@pytest.mark.parametrize("which", ["ws2_test", "wse2_paper"])
def test_what_fig3_leaves_unhatched_is_within_1_mev_and_what_it_hatches_is_not(which, map36, checks36):
    """unhatched_regions (Fig. 3 hatches the rest), evaluated at the check points the way the
    figure evaluates it on its fine grid.  The valence pair: every check point outside the
    hatching is within 1 meV of the direct pw.x value, and the hatching is not for show (points
    beyond 1 meV inside it: the anticrossing near M below the window).  The conduction pair: the
    hatching marks where its Delta is no spin splitting (10.6 meV there for WS2); outside it the
    WS2 checks are within 1 meV, but WSe2's independent points near Gamma-Q are not (7.9 meV: open,
    docs/performance.md) -- which is why the figure states the check points' number, not 1 meV."""
    if which == "ws2_test":
        grid, checks = map36, checks36
    else:
        grid, own = split_map(_read("soc_map", PAPER_WSE2), 36)
        checks = BandData.merge(own, _read("checks", PAPER_WSE2))
    fit = interpolate(grid)
    k = np.asarray(checks.kpoints_crystal)
    drawn = splitting_map(fit.at(k), fit.reciprocal_cell, conduction_polarisation(grid, k))
    ref = spin_pairs(checks, fit.vbm_ev)
    got = fit.at(k)
    # the map unfolds its points over the zone: keep the identity image (the first len(k))
    ok = {name: v[:len(k)] for name, v in unhatched_regions(drawn).items()}
    assert np.allclose(drawn.k_cartesian[:len(k)], k[:, :2] @ fit.reciprocal_cell[:2, :2])
    err = {name: np.abs((got.up[name] - got.down[name]) - (ref.up[name] - ref.down[name])) * 1000.0
           for name in ("uvb", "lcb")}
    assert err["uvb"][ok["uvb"]].max() < 1.0  # measured 0.28 (WS2), 0.91 (WSe2)
    assert err["uvb"][~ok["uvb"]].max() > 3.0  # measured 3.2 (WS2), 4.4 (WSe2)
    top = np.maximum(got.up["uvb"], got.down["uvb"])
    assert np.array_equal(ok["uvb"], top > -0.9)
    if which == "ws2_test":
        assert err["lcb"][ok["lcb"]].max() < 1.0 and err["lcb"][~ok["lcb"]].max() > 5.0  # measured 0.55, 10.6
    else:
        assert err["lcb"][ok["lcb"]].max() > 5.0  # measured 7.9 near Gamma-Q, |<sigma_z>| 0.81-0.85


def test_wse2_independent_points_validate_the_two_level_treatment_near_m():
    """32 points chosen before they were computed (24 more than 0.9 eV below the VBM, 8 just
    inside the window): the shipped valence interpolation, with the two-level form where the
    lower member nears the next same-spin band, is within 1 meV in the window and 4x closer than
    the member-by-member interpolant below it (4.4 against 18.4 meV)."""
    grid, _ = split_map(_read("soc_map", PAPER_WSE2), 36)
    checks = _read("checks", PAPER_WSE2)
    assert len(checks.kpoints_crystal) == 32 and not on_wedge_grid(checks.kpoints_crystal, 36).any()
    fit = interpolate(grid)
    e = interpolation_errors(fit, checks)
    assert e.max_uvb_window_mev < 1.0 and e.max_delta_uvb_window_mev < 1.0  # measured 0.05, 0.08
    _, up, down = full_grid(grid)
    plain = TrianglePair(up["uvb"], down["uvb"], fit.reciprocal_cell)(checks.kpoints_crystal)
    ref = spin_pairs(checks, fit.vbm_ev)
    below = np.maximum(ref.up["uvb"], ref.down["uvb"]) < -0.9
    assert below.sum() == 24
    plain_err = np.abs((plain[0] - plain[1]) - (ref.up["uvb"] - ref.down["uvb"]))[below].max() * 1000
    assert plain_err > 3 * e.max_delta_mev["uvb"]  # measured 18.4 against 4.4
    assert e.max_delta_mev["uvb"] > 1.0  # still beyond 1 meV below the window: the hatching stays


def test_map_for_figure_splits_grid_and_checks(map36, checks36):
    both = BandData.merge(map36, checks36)
    drawn = map_for_figure(both, 36)
    assert drawn.points == 36 and drawn.fine_points == 144
    assert drawn.errors is not None and drawn.errors.n_points == 40
    assert _distinct_points(drawn.direct) == 36 * 36  # the whole zone (the hexagon's edge points twice)
    assert _distinct_points(drawn.fine) == 144 * 144
    assert drawn.direct.lcb_min_abs_sigma_z.min() < 0.8 < drawn.direct.lcb_min_abs_sigma_z.max()  # c1, c2 near Gamma
    # K (1/3, 1/3): Delta_UVB there equals the direct map's, the energy zero is the VBM
    k = np.argmin(np.abs(drawn.fine.uvb_energy_ev))
    assert abs(abs(drawn.fine.delta_uvb_mev[k]) - np.abs(drawn.direct.delta_uvb_mev).max()) < 1e-6
    old = map_for_figure(map36, 36)  # a map made before check points existed: drawn, not validated
    assert old.errors is None
    with pytest.raises(AnalysisError, match="of the 61 points of the 24 x 24"):
        split_map(map36, 24)


def test_fig3_states_the_interpolation_and_keeps_direct_points_in_the_csv(map36, checks36, tmp_path):
    import csv

    from tmdflow.figures import fig3_map

    drawn = map_for_figure(BandData.merge(map36, checks36), 36)
    files = fig3_map(drawn, tmp_path, "WS2 monolayer · settings test")
    assert {Path(f).name for f in files} >= {"fig3_contours.png", "fig3_splitting_map.svg", "fig3_map.csv"}
    svg = (tmp_path / "fig3_contours.svg").read_text()
    assert "144×144 interpolation of the spin-resolved bands" in svg and "40 direct check points" in svg
    # the regions where the drawn Delta is not what the checks validate are hatched and say why
    svg = (tmp_path / "fig3_splitting_map.svg").read_text()
    assert "UVB &gt; 0.9 eV below the VBM" in svg and "up to 3.2 meV at the run's checks there" in svg
    assert "spin-mixed, |⟨σz⟩| &lt; 0.8" in svg and svg.count("<pattern") >= 1  # the hatch
    with open(tmp_path / "fig3_map.csv") as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == len(drawn.direct.k_cartesian)


def test_the_map_step_asks_for_a_quarter_of_its_wedge_as_check_points():
    """8 check points missed the conduction pair's hard region at the paper preset's 36 grid; the
    step now computes 32 there (and all 3 that lie between the points of the tests' 6 grid)."""
    from tmdflow.steps.soc_map import map_kpoints

    for n, wedge, checks in ((6, 7, 3), (12, 19, 8), (36, 127, 32)):
        k = map_kpoints(n)
        assert len(k) == wedge + checks and on_wedge_grid(k, n).sum() == wedge



def _wannier12() -> BandData:
    """The Wannier model's bands (8 around the gap, with <sigma_z>) as the wannier_map step keeps
    them: on Fig. 3's 144 x 144 wedge, then at the fixture's soc_map points and its 32 independent
    points (wannier12_map.npz, tests/fixtures/README.md)."""
    with np.load(PAPER_WSE2 / "wannier12_map.npz") as f:
        k = np.column_stack([f["kpoints_crystal"], np.zeros(len(f["kpoints_crystal"]))])
        return BandData(k, f["eigenvalues_ev"], float(f["n_electrons"]), True,
                        _read("checks", PAPER_WSE2).reciprocal_cell).with_sigma_z(f["sigma_z"])


def test_wannier_model_with_its_residual_is_within_1_mev_everywhere_at_the_independent_points():
    """WSe2 at the paper preset: the 12 x 12 Wannier model corrected by its residual on the 36
    grid (CorrectedPairs) against the 32 independent points -- the valence pair below the window
    (where the pair interpolation is off by 4.4 meV) and the conduction pair near Gamma-Q (7.9
    meV) included.  The model alone is not enough (1.1 / 2.1 meV): the residual is what the grid
    adds."""
    from tmdflow.analysis.bzinterp import TabulatedPairs, wannier_corrected

    grid, _ = split_map(_read("soc_map", PAPER_WSE2), 36)
    checks = _read("checks", PAPER_WSE2)
    model = _wannier12()
    fit = wannier_corrected(grid, model)
    e = interpolation_errors(fit, checks)
    assert e.max_delta_mev["uvb"] < 1.0 and e.max_uvb_mev < 1.0  # measured 0.31, 0.12
    assert e.max_delta_lcb_polarised_mev < 1.0  # measured 0.21
    alone = interpolation_errors(TabulatedPairs(model, fit.vbm_ev), checks)
    assert alone.max_delta_mev["uvb"] > 1.0 and alone.max_delta_lcb_polarised_mev > 1.5  # measured 1.14, 2.14
    # at the grid's own points the corrected map is the direct calculation -- except on the Gamma-M
    # lines, where the pair is degenerate by symmetry but the model splits it by up to 0.44 meV and
    # the unfolding's mirror swaps the members' residuals (measured 0.44 meV there)
    at_grid = fit.at(grid.kpoints_crystal)
    ref = spin_pairs(grid, fit.vbm_ev)
    for n in ("uvb", "lcb"):
        err = np.abs(at_grid.up[n] - ref.up[n]) * 1000
        degenerate = np.abs(ref.up[n] - ref.down[n]) * 1000 < 1e-3
        assert err[~degenerate].max() < 1e-6 and err[degenerate].max() < 0.5


def test_fig3_from_the_wannier_model_hatches_only_where_the_conduction_pair_is_spin_mixed(tmp_path):
    from tmdflow.analysis.bzinterp import valence_validated_everywhere
    from tmdflow.figures import FigureInfo, fig3_map

    direct, model = _read("soc_map", PAPER_WSE2), _wannier12()
    drawn = map_for_figure(direct, 36, model)
    assert drawn.method == "wannier" and drawn.fine_points == 144 and drawn.errors.n_points == 8
    assert drawn.errors.max_delta_mev["uvb"] < 1.0 and drawn.errors.max_delta_lcb_polarised_mev < 1.0
    assert valence_validated_everywhere(drawn)
    ok = unhatched_regions(drawn.fine, valence_validated=True)
    assert ok["uvb"].all() and 0.0 < (~ok["lcb"]).mean() < 0.1  # spin-mixed near Gamma only
    files = fig3_map(drawn, tmp_path, FigureInfo("WSe2 monolayer", "paper", 16, 91, 36, "45/360 Ry"))
    svg = (tmp_path / "fig3_splitting_map.svg").read_text()
    assert "Wannier model" in svg and len(files) == 5
    # a model without the fine wedge (or of another map) is refused, not drawn wrong
    with pytest.raises(AnalysisError, match="not computed at the points"):
        map_for_figure(direct, 36, model.take(np.arange(len(wedge_points(144)), len(model.kpoints_crystal))))
