"""Delta, dE(Gamma-K) and gaps: on the real MoS2 quick fixture and on constructed edge cases."""

import numpy as np
import pytest

from tmdflow.analysis.splitting import analyze_bands
from tmdflow.bands import BandData
from tmdflow.calculators.espresso.parsers import parse_bandsx_sigma_z, parse_pw_xml
from tmdflow.errors import AnalysisError
from tests.helpers import QE67


QUICK = QE67 / "mos2_quick_soc"


@pytest.fixture(scope="module")
def mos2():
    xml = parse_pw_xml(QUICK / "bands_soc.xml")
    return xml.bands.with_sigma_z(parse_bandsx_sigma_z(QUICK / "spin_texture.dat", xml.bands.eigenvalues))


def test_mos2_quick_fixture_reproduces_the_paper_splitting(mos2):
    r = analyze_bands(mos2)
    # the fixture's own numbers (pw.x 6.7, quick preset): the paper gives 148 meV; the issue
    # measured 149.1 meV with the same settings; we require the paper's value within 5 meV
    assert r.delta_vb_k_mev == pytest.approx(148, abs=5)
    assert r.delta_vb_k_mev == pytest.approx(149.1, abs=0.1)
    # MoS2: small CB splitting, lowest conduction state has the spin of the top valence state
    assert r.delta_cb_sign_known and 0 < r.delta_cb_k_mev < 10
    assert r.direct_gap_at_k and r.vbm_location == "K" and r.cbm_location == "K"
    assert 1.4 < r.gap_ev < 1.9  # PBE monolayer MoS2
    assert r.delta_e_gamma_k_mev > 0  # VBM at K, above Gamma


def test_spins_are_fully_out_of_plane_and_reversed_at_kprime(mos2):
    r = analyze_bands(mos2)
    assert abs(r.vb_k_sigma_z[0]) > 0.95 and abs(r.vb_k_sigma_z[1]) > 0.95
    assert np.sign(r.vb_k_sigma_z[0]) == -np.sign(r.vb_k_sigma_z[1])
    assert r.delta_vb_kprime_mev == pytest.approx(r.delta_vb_k_mev, abs=1e-3)  # time reversal
    assert r.spin_reversed_at_kprime is True


def test_states_are_found_by_electron_count_not_band_index(mos2):
    """Adding two deep (semicore-like) bands must not change anything."""
    e = mos2.eigenvalues
    deep = np.full((e.shape[0], 2), -100.0)
    shifted = BandData(mos2.kpoints_crystal, np.hstack([deep, e]), mos2.n_electrons + 2, True,
                       mos2.reciprocal_cell, sigma_z=np.hstack([np.zeros((e.shape[0], 2)), mos2.sigma_z]))
    a, b = analyze_bands(mos2), analyze_bands(shifted)
    assert b.delta_vb_k_mev == pytest.approx(a.delta_vb_k_mev)
    assert b.delta_cb_k_mev == pytest.approx(a.delta_cb_k_mev)
    assert b.gap_ev == pytest.approx(a.gap_ev)


def test_delta_cb_sign_flips_when_conduction_spins_flip(mos2):
    sz = mos2.sigma_z.copy()
    n = mos2.n_occupied
    sz[:, [n, n + 1]] = sz[:, [n + 1, n]]
    flipped = analyze_bands(mos2.with_sigma_z(sz))
    assert flipped.delta_cb_k_mev == pytest.approx(-analyze_bands(mos2).delta_cb_k_mev)


def test_without_spin_texture_delta_cb_is_unsigned(mos2):
    plain = BandData(mos2.kpoints_crystal, mos2.eigenvalues, mos2.n_electrons, True, mos2.reciprocal_cell)
    r = analyze_bands(plain)
    assert not r.delta_cb_sign_known and r.delta_cb_k_mev > 0


def _toy(kpts, eigs, nelec=2, spinor=True):
    return BandData(np.array(kpts, float), np.array(eigs, float), nelec, spinor, np.eye(3))


def test_k_list_without_k_is_refused():
    with pytest.raises(AnalysisError, match="K = \\(1/3, 1/3, 0\\)"):
        analyze_bands(_toy([[0, 0, 0], [0.5, 0, 0]], [[-1, 0, 1, 2], [-1, 0, 1, 2]]))


def test_k_is_recognised_modulo_reciprocal_lattice_vectors():
    r = analyze_bands(_toy([[0, 0, 0], [4 / 3, 1 / 3, 0]], [[-2, -1.5, 1, 2], [-1, -0.8, 1.2, 1.3]]))
    assert r.delta_vb_k_mev == pytest.approx(200)
    assert r.delta_e_gamma_k_mev == pytest.approx(700)


def test_indirect_gap_is_reported_with_locations():
    r = analyze_bands(_toy([[0, 0, 0], [1 / 3, 1 / 3, 0], [1 / 6, 1 / 6, 0]],
                           [[-2, -0.1, 2, 3], [-1, -0.5, 1.5, 2], [-3, -1.0, 1.0, 2]]))
    assert not r.direct_gap_at_k
    assert r.vbm_location == "Gamma" and r.cbm_location == "Q"  # (1/6, 1/6, 0): half way to K, named Q (issue 24: one name)
    assert r.gap_ev == pytest.approx(1.1)


def test_scalar_relativistic_bands_are_refused():
    out = parse_pw_xml(QE67 / "mos2_test_scf_sr" / "scf_sr.xml")
    with pytest.raises(AnalysisError, match="without spin-orbit"):
        analyze_bands(out.bands)


def test_metal_like_electron_count_is_refused():
    with pytest.raises(AnalysisError, match="whole"):
        analyze_bands(_toy([[0, 0, 0], [1 / 3, 1 / 3, 0]], [[0, 1, 2, 3], [0, 1, 2, 3]], nelec=2.5))


def test_kramers_degenerate_levels_count_once_as_in_bulk_2h():
    """Bulk 2H (inversion + time reversal): every level doubly degenerate; Delta between distinct levels."""
    levels = [-3.0, -3.0, -1.2, -1.2, -1.0, -1.0, 0.5, 0.5, 0.6, 0.6]
    r = analyze_bands(_toy([[0, 0, 0], [1 / 3, 1 / 3, 0]], [[x - 0.3 for x in levels], levels], nelec=6))
    assert r.delta_vb_k_mev == pytest.approx(200)
    assert r.delta_cb_k_mev == pytest.approx(100) and not r.delta_cb_sign_known
    assert r.spin_degenerate


def test_gamma_k_profile_needs_a_path_and_the_spin_texture():
    import numpy as np

    from tmdflow.bands import BandData
    from tmdflow.figures import gamma_k_profile

    labels = ("G", "K", "K'", "M", "Q", "G", "M", "K", "", "G")
    k = np.zeros((10, 3))
    k[7], k[8] = (1 / 3, 1 / 3, 0), (1 / 6, 1 / 6, 0)  # the K -> Gamma segment of the path
    bands = BandData(k, np.tile(np.arange(4.0), (10, 1)), 2, True, np.eye(3), labels=labels)
    assert gamma_k_profile(bands) == {}  # no <sigma_z>: no signed splitting to plot
    with_sz = bands.with_sigma_z(np.tile([1.0, -1.0, 1.0, -1.0], (10, 1)))
    prof = gamma_k_profile(with_sz)
    assert np.allclose(prof["fraction"], [0, 0.5, 1]) and np.allclose(prof["delta_uvb_mev"], -1000.0)


WSE2 = QE67 / "wse2_quick_soc"


@pytest.fixture(scope="module")
def wse2():
    from tmdflow.calculators.espresso.parsers import parse_bandsx_sigma_inplane

    xml = parse_pw_xml(WSE2 / "bands_soc.xml")
    f = WSE2 / "spin_texture.dat"
    return xml.bands.with_sigma_z(parse_bandsx_sigma_z(f, xml.bands.eigenvalues),
                                  parse_bandsx_sigma_inplane(f, xml.bands.eigenvalues))


def test_in_plane_spin_check_passes_real_wse2_and_catches_tilted_or_parallel_spins(wse2):
    """The spin check on a real run (WSe2, the smallest |<sigma_z>| at K of the four: 0.888 for the
    lowest conduction state) and on two corrupted copies of it: an in-plane spin component at K
    (what a broken sigma_h would give) and a split pair whose two states carry the same spin."""
    from dataclasses import replace

    from tmdflow.analysis.checks import check_monolayer

    spin_messages = ("sigma_z", "in-plane", "opposite spins")
    r = analyze_bands(wse2)
    assert r.k_sigma_inplane_max is not None and r.k_sigma_inplane_max < 0.005
    assert abs(r.cb_k_sigma_z[0]) == pytest.approx(0.888, abs=0.01)
    checks = check_monolayer(wse2)  # the fixture has no Gamma-M path: only that failure is expected
    assert not [f for f in checks.failures if any(m in f for m in spin_messages)], checks.failures
    assert checks.max_sigma_inplane_at_k < 0.005

    nocc = wse2.n_occupied
    tilted = wse2.sigma_inplane.copy()
    tilted[1, nocc] = 0.3
    failures = check_monolayer(replace(wse2, sigma_inplane=tilted)).failures
    assert any("in-plane spin" in f for f in failures), failures
    parallel = wse2.sigma_z.copy()
    parallel[1, nocc + 1] = -parallel[1, nocc + 1]  # c2 now has the spin of c1
    failures = check_monolayer(replace(wse2, sigma_z=parallel)).failures
    assert any("conduction pair at K does not carry opposite spins" in f for f in failures), failures
