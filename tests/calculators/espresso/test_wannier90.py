"""Wannier90 3.1 / pw2wannier90 (QE 6.7) parsers and the tight-binding model on the real files
of a wannier_map step (tests/fixtures/wannier90-3.1/mos2_test_grid3, README there): MoS2
monolayer, test preset, a 3 x 3 x 1 grid."""

import gzip
import shutil

import numpy as np
import pytest

from tests.helpers import FIXTURES
from tmdflow.analysis.wannier import WannierModel, fold_shifts, wannier_model
from tmdflow.calculators.espresso.parsers import wannier90 as w90
from tmdflow.calculators.espresso.parsers.xml import parse_pw_xml
from tmdflow.calculators.espresso.wannier import (N_WANN, excluded_bands, frozen_window_top, grid_kpoints,
                                                  win_text)
from tmdflow.errors import AnalysisError, OutputParseError

RUN = FIXTURES / "wannier90-3.1" / "mos2_test_grid3"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The fixture's files, unpacked (the large ones are stored gzipped)."""
    out = tmp_path_factory.mktemp("w90")
    for f in RUN.iterdir():
        if f.suffix == ".gz":
            with gzip.open(f, "rb") as src, open(out / f.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def parsed(files):
    hr = w90.parse_hr(files / "wannier_hr.dat")
    kq, u = w90.parse_u_matrices(files / "wannier_u.mat")
    _, u_dis = w90.parse_u_matrices(files / "wannier_u_dis.mat")
    return {"hr": hr, "shifts": w90.parse_wsvec(files / "wannier_wsvec.dat", N_WANN), "kq": kq, "u": u,
            "u_dis": u_dis, "spn": w90.parse_spn_formatted(files / "wannier.spn")}


def test_hamiltonian_is_hermitian_in_real_space(parsed):
    hr = parsed["hr"]
    assert hr.matrices.shape[1:] == (N_WANN, N_WANN)
    assert np.sum(1.0 / hr.degeneracy) == pytest.approx(9)  # the Wigner-Seitz cell of the 3 x 3 supercell
    index = {tuple(r): i for i, r in enumerate(hr.vectors)}
    for i, r in enumerate(hr.vectors):  # H(-R) = H(R)^dagger
        assert np.allclose(hr.matrices[index[tuple(-r)]], hr.matrices[i].conj().T, atol=1e-6)
    assert not np.any(hr.vectors[:, 2])  # a 2D grid: no vector along z


def test_gauge_matrices_are_unitary_and_on_the_grid(parsed):
    assert np.allclose(parsed["kq"], grid_kpoints(3), atol=1e-8)
    u, u_dis = parsed["u"], parsed["u_dis"]
    eye = np.eye(N_WANN)
    assert np.allclose(np.einsum("kij,kil->kjl", u.conj(), u), eye, atol=1e-8)
    assert u_dis.shape[1:] == (30, N_WANN)  # num_bands x num_wann: 42 bands less 12 excluded
    assert np.allclose(np.einsum("kij,kil->kjl", u_dis.conj(), u_dis), eye, atol=1e-8)


def test_spin_matrices_are_hermitian_pauli_elements(parsed):
    s = parsed["spn"]
    assert s.shape == (9, 30, 30)
    assert np.allclose(s, np.conj(np.swapaxes(s, 1, 2)))
    diag = np.real(np.einsum("kii->ki", s))
    assert np.abs(diag).max() <= 1.0 + 1e-6 and np.abs(diag).max() > 0.9  # sigma_z, not S_z = sigma_z / 2


def test_wout_says_what_the_run_did(files):
    run = w90.parse_wout(files / "wannier.wout")
    assert run.completed and run.n_wann == N_WANN and run.disentanglement_converged
    assert run.total_spread_angstrom2 == pytest.approx(30.4537, abs=1e-3)


def test_the_model_is_the_pw_run_on_its_grid_below_the_frozen_window(parsed, files):
    model = wannier_model(parsed["hr"], parsed["shifts"], parsed["spn"], parsed["u"], parsed["u_dis"], parsed["kq"],
                          12, 3)
    grid = parse_pw_xml(files / "wannier_map.xml").bands
    ref = np.asarray(grid.eigenvalues)
    assert excluded_bands(grid.n_electrons) == 12 and ref.shape[1] == 26 + 16
    top = frozen_window_top(ref, 26, 12, 2.0)
    assert "dis_froz_max = %.6f" % top in (files / "wannier.win").read_text()  # what the step wrote
    e, sz = model.eigen(grid_kpoints(3))
    ref = ref[:, 12:12 + N_WANN]
    frozen = ref < top
    assert np.abs(e - ref)[frozen].max() * 1000 < 0.1  # measured 0.01 meV
    assert np.abs(sz).max() <= 1.0 + 1e-6
    # the Wigner-Seitz shifts matter between the grid's points, not on them
    plain = WannierModel(fold_shifts(parsed["hr"].vectors, parsed["hr"].degeneracy, parsed["hr"].matrices, None),
                         model.sigma_z, 12, 3)
    assert np.allclose(plain.eigen(grid_kpoints(3))[0], e, atol=1e-6)
    k = np.array([[0.1, 0.05], [0.25, 0.2]])
    assert np.abs(plain.eigen(k)[0] - model.eigen(k)[0]).max() > 1e-4
    # kept bands: a spin-orbit BandData whose occupied count follows the kept range
    b = model.bands(k, grid.reciprocal_cell, 26, keep=(22, 29))
    assert b.n_occupied == 4 and b.eigenvalues.shape == (2, 8) and b.sigma_z is not None
    with pytest.raises(AnalysisError, match="not all in the Wannier manifold"):
        model.bands(k, grid.reciprocal_cell, 26, keep=(10, 20))


def test_model_file_round_trip(parsed, tmp_path):
    model = wannier_model(parsed["hr"], parsed["shifts"], parsed["spn"], parsed["u"], parsed["u_dis"], parsed["kq"],
                          12, 3)
    model.save(tmp_path / "m.npz")
    again = WannierModel.load(tmp_path / "m.npz")
    k = grid_kpoints(3)
    assert np.allclose(again.eigen(k)[0], model.eigen(k)[0]) and again.grid == 3 and again.first_band == 12
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(AnalysisError, match="not a Wannier model"):
        WannierModel.load(tmp_path / "bad.npz")


def test_damaged_files_are_named(files, tmp_path):
    lines = (files / "wannier_hr.dat").read_text().splitlines()
    (tmp_path / "hr.dat").write_text("\n".join(lines[:len(lines) // 2]) + "\n")
    with pytest.raises(OutputParseError, match="hr.dat: expected"):
        w90.parse_hr(tmp_path / "hr.dat")
    with pytest.raises(OutputParseError, match="not found"):
        w90.parse_spn_formatted(tmp_path / "missing.spn")
    text = (files / "wannier.spn").read_text().splitlines()
    (tmp_path / "cut.spn").write_text("\n".join(text[:1000]) + "\n")
    with pytest.raises(OutputParseError, match="truncated"):
        w90.parse_spn_formatted(tmp_path / "cut.spn")


def test_win_text_is_the_file_the_step_wrote(files):
    """win_text rebuilds the fixture's .win from the step's structure (MoS2, paper geometry, the test
    preset's 10 A) and its frozen window, byte for byte."""
    from tmdflow.steps import initial_structure
    from tmdflow.presets import load_preset

    atoms = initial_structure("MoS2", "monolayer", load_preset("test"))
    grid = parse_pw_xml(files / "wannier_map.xml").bands
    top = frozen_window_top(np.asarray(grid.eigenvalues), 26, 12, 2.0)
    text = win_text(atoms, "MoS2", 3, 42, 12, top)
    assert text == (files / "wannier.win").read_text()
    for line in ("num_wann = 22", "exclude_bands = 1-12", "spinors = .true.", "guiding_centres = .true.",
                 "Mo: d", "S: p", "mp_grid = 3 3 1"):
        assert line in text.splitlines()
