"""Parsers and failure classification of the Elk adapter on real Elk 8.4.30 outputs
(tests/fixtures/elk-8.4/README.md says how each was made)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tmdflow.analysis.splitting import analyze_bands
from tmdflow.calculators.elk.adapter import ElkCalculator
from tmdflow.calculators.elk.parsers import (
    parse_eigval, parse_info, parse_kpoints, parse_lsj_kst, parse_output_errors, parse_version_banner,
)
from tmdflow.calculators.elk.profile import ElkProfile
from tmdflow.calculators.espresso.profile import RunRecord
from tmdflow.errors import ElkCrashed, ElkInputRejected, OutputParseError, ScfNotConverged, StructureSymmetryError
from tmdflow.presets import load_preset
from tmdflow.units import BOHR_ANGSTROM, HARTREE_EV
from tests.helpers import FIXTURES

FIX = FIXTURES / "elk-8.4"
SCF = FIX / "mos2_quick_scf_soc"
BANDS = FIX / "mos2_quick_bands"


def test_info_of_a_converged_spin_orbit_ground_state():
    info = parse_info(SCF / "INFO.OUT")
    assert info.version == "8.4.30" and info.started_from == "atomic densities"
    assert info.converged and info.stopped and info.spin_orbit and not info.errors
    assert info.n_crystal_symmetries == 12  # P-6m2: the ideal prism kept all its operations
    assert info.kgrid == (6, 6, 1) and info.n_kpoints == 10
    assert info.rgkmax == pytest.approx(7.0) and info.muffin_tin_radii == (2.1, 2.1)
    assert info.valence_charge == pytest.approx(26.0) and info.core_charge == pytest.approx(48.0)
    assert info.n_iterations == 18 and len(info.rms_potential_changes) == 16  # none in loop 1 and the last
    assert info.rms_potential_changes[-1] < 1e-6 and info.energy_changes_ha[-1] < 1e-4
    # Elk prints b_i as rows: a_i . b_j = 2 pi delta_ij
    assert np.allclose(info.lattice_bohr @ info.reciprocal_bohr.T, 2 * np.pi * np.eye(3), atol=1e-6)
    assert info.lattice_bohr[0, 0] * BOHR_ANGSTROM == pytest.approx(3.193, abs=1e-8)


def test_eigenvalues_of_the_ground_state_hold_k():
    eig = parse_eigval(SCF / "EIGVAL.OUT")
    kp = parse_kpoints(SCF / "KPOINTS.OUT")
    assert eig.kpoints.shape == (10, 3) and np.allclose(eig.kpoints, kp.kpoints)
    assert kp.weights.sum() == pytest.approx(1.0)
    ik = int(np.nonzero(np.all(np.abs(eig.kpoints - [1 / 3, 1 / 3, 0]) < 1e-8, axis=1))[0][0])
    e = eig.eigenvalues_ha[ik] * HARTREE_EV * 1000
    assert np.all(np.diff(eig.eigenvalues_ha, axis=1) >= -1e-12)
    assert e[25] - e[24] == pytest.approx(147.3, abs=0.1)  # Delta_VB(K), 26 valence states (spinor)
    assert np.all(eig.occupancies[:, :26] > 0.999) and np.all(eig.occupancies[:, 26:] < 1e-3)


def test_one_shot_bands_reproduce_the_scf_levels_at_k():
    """The bands step's single loop (task 1, maxscl 1) on the converged potential gives the SCF's
    levels: the same potential, only more k-points."""
    scf, bands = parse_eigval(SCF / "EIGVAL.OUT"), parse_eigval(BANDS / "EIGVAL.OUT")
    assert bands.kpoints.shape == (36, 3)  # reducek 0: the whole 6 x 6 grid, K and K' apart
    for k in ([0, 0, 0], [1 / 3, 1 / 3, 0]):
        i = np.nonzero(np.all(np.abs(scf.kpoints - k) < 1e-8, axis=1))[0][0]
        j = np.nonzero(np.all(np.abs(bands.kpoints - k) < 1e-8, axis=1))[0][0]
        diff = np.abs(scf.eigenvalues_ha[i, :40] - bands.eigenvalues_ha[j, :40]).max() * HARTREE_EV * 1000
        assert diff < 0.01  # meV
    info = parse_info(BANDS / "INFO.OUT")
    assert info.started_from == "STATE.OUT" and info.n_iterations == 1 and not info.converged and info.stopped


def test_lsj_kst_spins_at_k_and_k_prime():
    spins = parse_lsj_kst(BANDS / "LSJ_KST.OUT")
    sz = spins.s_z_total
    assert set(spins.kpoints) == {15, 29}
    assert np.allclose(spins.kpoints[15], (1 / 3, 1 / 3, 0)) and np.allclose(spins.kpoints[29], (2 / 3, 2 / 3, 0))
    assert all(len(spins.per_atom[key]) == 3 for key in sz)  # Mo and both S spheres
    for state in (25, 26, 27, 28):
        assert 0.25 < abs(sz[(15, state)]) < 0.5  # muffin-tins only: |S_z| < 1/2
        assert sz[(29, state)] == pytest.approx(-sz[(15, state)], abs=1e-6)  # time reversal
    # MoS2: top valence (26) and lowest conduction (27) state at K have the same spin, S_z > 0
    assert sz[(15, 26)] > 0 and sz[(15, 27)] > 0 and sz[(15, 25)] < 0 and sz[(15, 28)] < 0


def test_bands_to_the_analysis_with_signed_delta_cb():
    bands = ElkCalculator(ElkProfile()).read_spin_orbit_bands(BANDS)
    assert bands.labels == ("G", "K", "K'", "M", "Q") and bands.n_electrons == 26 and bands.spinor
    assert np.allclose(bands.reciprocal_cell, parse_info(BANDS / "INFO.OUT").reciprocal_bohr / BOHR_ANGSTROM)
    assert np.isfinite(bands.sigma_z[1, 24:28]).all() and np.isnan(bands.sigma_z[0]).all()
    r = analyze_bands(bands)
    assert r.delta_vb_k_mev == pytest.approx(147.3, abs=0.1)
    assert r.delta_cb_sign_known and r.delta_cb_k_mev == pytest.approx(3.2, abs=0.1)  # > 0: MoX2 ordering
    assert r.delta_vb_kprime_mev == pytest.approx(r.delta_vb_k_mev, abs=1e-3) and r.spin_reversed_at_kprime
    assert r.delta_e_gamma_k_mev == pytest.approx(19.5, abs=0.1)
    assert r.direct_gap_at_k and r.gap_ev == pytest.approx(1.582, abs=1e-3)


def test_k_list_and_eigval_must_agree(tmp_path):
    shutil.copytree(BANDS, tmp_path / "b")
    (tmp_path / "b" / "bands_kpoints.txt").write_text("2 1/3 1/3 0 K\n")
    with pytest.raises(OutputParseError, match="not"):
        ElkCalculator(ElkProfile()).read_spin_orbit_bands(tmp_path / "b")


def test_input_rejected_is_classified():
    """Elk exits 0 after 'Error(readinput)': only the message tells."""
    d = FIX / "input_error"
    assert parse_output_errors(d / "elk.log") == ("Error(readinput): invalid block name : rgkmaxx",)
    with pytest.raises(ElkInputRejected, match="rgkmaxx") as exc:
        ElkCalculator._check_run(d, "elk.log", RunRecord("elk-lapw", ("elk-lapw",), d, 0, 1.0), "scf_soc")
    assert exc.value.exit_code == 36


def test_crash_without_the_normal_end_is_classified(tmp_path):
    """A run killed mid-SCF (here: the real INFO.OUT cut after loop 5, exit -11) is a crash."""
    text = (SCF / "INFO.OUT").read_text()
    (tmp_path / "INFO.OUT").write_text(text[: text.index("Loop number :    6")])
    (tmp_path / "scf_soc.log").write_text("Elk code version 8.4.30 started\n")
    with pytest.raises(ElkCrashed, match="exit -11") as exc:
        ElkCalculator._check_run(tmp_path, "scf_soc.log", RunRecord("elk-lapw", (), tmp_path, -11, 9.0), "scf_soc")
    assert exc.value.exit_code == 35 and "elk_threads: 1" in exc.value.remedy
    info = parse_info(tmp_path / "INFO.OUT")
    assert not info.stopped and not info.converged and info.n_iterations == 5


def test_not_converged_and_wrong_symmetry_are_classified(tmp_path):
    preset = load_preset("elk-quick")
    text = (SCF / "INFO.OUT").read_text()
    (tmp_path / "INFO.OUT").write_text(text.replace("Convergence targets achieved", "Reached self-consistent "
                                                                                   "loops maximum"))
    with pytest.raises(ScfNotConverged, match="elk_maxscl|did not converge"):
        ElkCalculator._check_ground_state(parse_info(tmp_path / "INFO.OUT"), preset, 187, tmp_path, "scf_soc")
    info = parse_info(SCF / "INFO.OUT")
    ElkCalculator._check_ground_state(info, preset, 187, SCF, "scf_soc")  # passes: 12 operations
    with pytest.raises(StructureSymmetryError, match="12 crystal symmetries"):
        ElkCalculator._check_ground_state(info, preset, 194, SCF, "scf_soc")  # 2H bulk has 24


def test_not_elk_files():
    with pytest.raises(OutputParseError):
        parse_info("Program PWSCF v.6.7 starts")
    with pytest.raises(OutputParseError):
        parse_eigval("nothing here")
    with pytest.raises(OutputParseError):
        parse_lsj_kst("k-point : nothing")


def test_the_version_banner_of_elks_standard_output():
    """What ElkProfile.version reads: the banner Elk prints as it starts, also when it stops at
    once (input_error's log: rejected elk.in)."""
    for log in (SCF / "scf_soc.log", FIX / "input_error" / "elk.log"):
        assert parse_version_banner(log.read_text()) == parse_info(SCF / "INFO.OUT").version == "8.4.30"
    assert parse_version_banner("Program PWSCF v.6.7 starts") is None
