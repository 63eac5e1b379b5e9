"""Parsers on real pw.x 6.7 / bands.x outputs written by tmdflow's own runs (tests/fixtures/README.md)."""

import numpy as np
import pytest

from tmdflow.calculators.espresso.parsers import (parse_bandsx_sigma_inplane, parse_bandsx_sigma_z, parse_pw_stdout,
                                                  parse_pw_xml)
from tmdflow.calculators.espresso.adapter import EspressoCalculator
from tmdflow.calculators.espresso.parsers.stdout import parse_duration, parse_program_clock
from tmdflow.errors import OutputParseError
from tests.helpers import QE67


QUICK = QE67 / "mos2_quick_soc"


def test_scf_xml_of_spin_orbit_run():
    out = parse_pw_xml(QUICK / "scf_soc.xml")
    assert out.qe_version == "6.7MaX" and out.calculation == "scf"
    assert out.converged is True and out.n_scf_steps > 3
    assert out.spin_orbit and out.noncollinear
    assert out.bands.spinor and out.bands.n_electrons == 26 and out.bands.n_occupied == 26
    assert out.symbols == ("Mo", "S", "S")
    assert out.cell_angstrom[0, 0] == pytest.approx(3.193, abs=1e-6)
    assert out.total_energy_ev == pytest.approx(-6764.1, abs=1.0)  # Mo + 2 S PAW valence, eV
    # D3h: forces only along z, equal and opposite on the two S
    f = out.forces_ev_per_angstrom
    assert np.allclose(f[:, :2], 0, atol=1e-6) and f[1, 2] == pytest.approx(-f[2, 2])
    assert out.stress_gpa.shape == (3, 3)
    assert out.wall_seconds > 0 and out.exit_status == 0
    # 6x6x1 mesh reduced by symmetry; Gamma is the first k-point
    assert np.allclose(out.bands.kpoints_crystal[0], 0)


def test_bands_xml_k_list_in_crystal_coordinates():
    out = parse_pw_xml(QUICK / "bands_soc.xml")
    assert out.calculation == "bands" and out.converged is None
    k = out.bands.kpoints_crystal
    assert np.allclose(k[:5], [[0, 0, 0], [1 / 3, 1 / 3, 0], [-1 / 3, -1 / 3, 0], [0.5, 0, 0], [1 / 6, 1 / 6, 0]], atol=1e-9)
    assert out.bands.eigenvalues.shape == (5, 42)
    assert np.all(np.diff(out.bands.eigenvalues, axis=1) >= -1e-9)  # ascending


def test_xml_and_text_output_agree():
    xml = parse_pw_xml(QUICK / "bands_soc.xml")
    txt = parse_pw_stdout(QUICK / "bands_soc.out")
    assert txt.qe_version == "6.7MaX" and txt.job_done and txt.spinor
    assert np.allclose(txt.bands.kpoints_crystal, xml.bands.kpoints_crystal, atol=2e-4)  # text has 4 decimals
    assert np.allclose(txt.bands.eigenvalues, xml.bands.eigenvalues, atol=1e-4)  # text has 4 decimals (eV)
    assert np.allclose(txt.bands.reciprocal_cell, xml.bands.reciprocal_cell, atol=1e-5)


def test_scf_stdout_convergence_and_timing():
    out = parse_pw_stdout(QUICK / "scf_soc.out")
    xml = parse_pw_xml(QUICK / "scf_soc.xml")
    assert out.converged is True and out.n_iterations == xml.n_scf_steps
    assert out.wall_seconds > 0 and out.error is None and not out.walltime_exceeded
    # the fixture's closing clock line: "PWSCF : 30.12s CPU 41.84s WALL"
    assert out.cpu_seconds == pytest.approx(30.12) and out.wall_seconds == pytest.approx(41.84)
    assert out.n_electrons == 26.0


def test_closing_clock_of_any_qe_program(tmp_path):
    clock = parse_program_clock(QUICK / "spin_texture.out", "BANDS")  # "BANDS : 4.00s CPU 5.02s WALL"
    assert (clock.cpu_seconds, clock.wall_seconds) == (pytest.approx(4.00), pytest.approx(5.02))
    assert parse_program_clock(QUICK / "scf_soc.out", "PWSCF").cpu_seconds == pytest.approx(30.12)
    assert parse_program_clock(QUICK / "scf_soc.out", "BANDS") is None  # another program's output
    cut = tmp_path / "spin_texture.out"  # a bands.x killed before its closing line
    cut.write_text((QUICK / "spin_texture.out").read_text().split("BANDS        :")[0])
    assert parse_program_clock(cut, "BANDS") is None
    # the adapter reads the post-processing clock of a step from the program's output in its directory
    assert EspressoCalculator.postprocessing_cpu_seconds(QUICK / "spin_texture.out", "BANDS") == pytest.approx(4.00)
    assert EspressoCalculator.postprocessing_cpu_seconds(QUICK / "scf_soc.out", "BANDS") is None
    assert EspressoCalculator.postprocessing_cpu_seconds(tmp_path / "spin_texture.out", "BANDS") is None


def test_unconverged_scf_is_reported_by_both_parsers():
    d = QE67 / "mos2_test_scf_unconverged"
    out = parse_pw_stdout(d / "scf_soc.out")
    assert out.converged is False and out.n_iterations is None
    xml = parse_pw_xml(d / "scf_soc.xml")
    assert xml.converged is False and xml.n_scf_steps == 3


def test_scalar_relativistic_run_is_spin_degenerate():
    out = parse_pw_xml(QE67 / "mos2_test_scf_sr" / "scf_sr.xml")
    assert not out.spin_orbit and not out.bands.spinor
    assert out.bands.n_occupied == 13  # 26 electrons in doubly occupied bands


def test_bandsx_spin_texture_is_attached_to_the_right_states():
    xml = parse_pw_xml(QUICK / "bands_soc.xml")
    sz = parse_bandsx_sigma_z(QUICK / "spin_texture.dat", xml.bands.eigenvalues)
    assert sz.shape == xml.bands.eigenvalues.shape
    assert np.all(np.abs(sz) <= 1.0 + 1e-9)
    # time reversal: <sigma_z>(K') = -<sigma_z>(K) for every band
    assert np.allclose(sz[2], -sz[1], atol=0.02)
    # at Gamma every level is a Kramers pair: values come in +- pairs
    assert abs(sz[0].sum()) < 0.05


def test_bandsx_in_plane_spin_vanishes_and_sigma_z_is_reduced_only_by_orbital_mixing(tmp_path):
    """WSe2 (quick, the study's relaxed a, d; bands.x lsigma(1..3)): sigma_h makes <sigma_x>,
    <sigma_y> vanish for every non-degenerate state of the k_z = 0 plane, while |<sigma_z>| of the
    lowest conduction state at K is well below 1 (spin-orbit admixture of M d_xz, d_yz of the
    other spin: |<sigma_z>| = 1 - 2w) -- it is still fully out of plane."""
    d = QE67 / "wse2_quick_soc"
    bands = parse_pw_xml(d / "bands_soc.xml").bands
    sz = parse_bandsx_sigma_z(d / "spin_texture.dat", bands.eigenvalues)
    sp = parse_bandsx_sigma_inplane(d / "spin_texture.dat", bands.eigenvalues)
    nocc = bands.n_occupied
    edge = slice(nocc - 2, nocc + 2)  # v2, v1, c1, c2
    for ik in (1, 2, 4):  # K, K', Q: split (non-degenerate) pairs
        assert np.all(sp[ik, edge] < 0.005), sp[ik, edge]  # bands.x prints s/2 to 0.001
    assert abs(sz[1, nocc - 1]) > 0.99  # top valence state at K: pure d(m=2) with one spin
    assert 0.8 < abs(sz[1, nocc]) < 0.95  # lowest conduction state at K: measured 0.888
    assert sp[0, edge].max() > 0.05  # at Gamma (Kramers pairs) the spin direction is arbitrary: the
    # in-plane file really holds sigma_x, sigma_y, not zeros
    for name in ("spin_texture.dat", "spin_texture.dat.3"):  # a run with lsigma(3) only
        (tmp_path / name).write_text((d / name).read_text())
    assert parse_bandsx_sigma_inplane(tmp_path / "spin_texture.dat") is None


def test_bandsx_energies_that_do_not_match_are_refused():
    xml = parse_pw_xml(QUICK / "bands_soc.xml")
    shifted = xml.bands.eigenvalues + 0.05
    with pytest.raises(OutputParseError, match="do not match"):
        parse_bandsx_sigma_z(QUICK / "spin_texture.dat", shifted)


def test_truncated_xml_is_a_clear_error(tmp_path):
    text = (QUICK / "scf_soc.xml").read_text()
    bad = tmp_path / "data-file-schema.xml"
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(OutputParseError, match="cannot read"):
        parse_pw_xml(bad)


def test_not_a_pw_output_is_refused(tmp_path):
    f = tmp_path / "x.out"
    f.write_text("hello\n")
    with pytest.raises(OutputParseError, match="not a pw.x output"):
        parse_pw_stdout(f)


@pytest.mark.parametrize("text,seconds", [("50.82s", 50.82), ("1m12.46s", 72.46), ("1h 2m", 3720), ("2h30m", 9000),
                                                 ("1d 3h 5m", 97500)])
def test_qe_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_unconverged_eigenvalues_of_a_real_non_scf_run_are_counted():
    # paper-preset SR bands of the relaxed MoS2 monolayer (96 k-points): pw.x printed
    # "c_bands:  1 eigenvalues not converged" once
    out = parse_pw_stdout(QE67 / "mos2_paper_bands_sr" / "bands_sr.out")
    assert out.unconverged_eigenvalues == 1
    assert out.job_done and out.bands.eigenvalues.shape[0] == 96
    assert parse_pw_stdout(QUICK / "bands_soc.out").unconverged_eigenvalues == 0
