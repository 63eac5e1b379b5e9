import numpy as np
import pytest

from tmdflow.kpoints import K_POINT, contains_k, path_gmkg, special_points_2d
from tmdflow.structures import build_monolayer


def test_ase_2d_special_points_match_our_k():
    cell = build_monolayer("MoS2", 3.193, 1.567).cell[:]
    pts = special_points_2d(cell)
    assert np.allclose(pts["K"], K_POINT)
    assert np.allclose(pts["M"], [0.5, 0, 0])


def test_k_is_a_zone_corner_at_4pi_over_3a():
    atoms = build_monolayer("MoS2", 3.193, 1.567)
    recip = 2 * np.pi * atoms.cell.reciprocal()
    k_cart = K_POINT @ recip
    assert np.linalg.norm(k_cart) == pytest.approx(4 * np.pi / (3 * 3.193))


def test_path_runs_gamma_m_k_gamma():
    cell = build_monolayer("WSe2", 3.31, 1.685).cell[:]
    kpts, labels = path_gmkg(cell, 40)
    named = [l for l in labels if l]
    assert named == ["G", "M", "K", "G"]
    assert np.allclose(kpts[labels.index("K")], K_POINT)


@pytest.mark.parametrize("n,expected", [(3, True), (6, True), (16, False), (12, True), (4, False)])
def test_gamma_centred_mesh_contains_k_only_if_3_divides_n(n, expected):
    assert contains_k(n) is expected
    # brute force: is (1/3, 1/3) on the n x n grid?
    grid = {(i / n % 1, j / n % 1) for i in range(n) for j in range(n)}
    assert any(np.allclose(g, (1 / 3, 1 / 3)) for g in grid) is expected
