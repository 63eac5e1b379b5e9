"""The generated pw.x inputs: checked by content and read back with ASE's independent parser."""

import re

import ase.io
import numpy as np
import pytest

from tmdflow.calculators.espresso.pwinput import PwJob, build_pw_input
from tmdflow.errors import InputError
from tmdflow.kpoints import gamma_k_list
from tmdflow.presets import load_preset
from tmdflow.structures import build_monolayer


@pytest.fixture
def atoms():
    return build_monolayer("MoS2", 3.193, 1.567, 15.0)


def _write(tmp_path, text):
    path = tmp_path / "pw.in"
    path.write_text(text)
    return path


def test_spin_orbit_scf_input(atoms, tmp_path):
    text = build_pw_input(PwJob("scf", atoms, load_preset("quick"), {"Mo": "Mo.rel2.UPF", "S": "S.rel2.UPF"},
                                "./pseudo", spin_orbit=True, kmesh=(6, 6, 1)))
    assert "noncolin = .true." in text and "lspinorb = .true." in text
    assert "ecutwfc = 45" in text and "ecutrho = 360" in text
    assert "K_POINTS automatic\n  6 6 1 0 0 0" in text
    assert "Mo 95.9500 Mo.rel2.UPF" in text
    back = ase.io.read(_write(tmp_path, text), format="espresso-in")
    assert np.allclose(back.cell[:], atoms.cell[:], atol=1e-8)
    assert np.allclose(back.positions, atoms.positions, atol=1e-8)
    assert back.get_chemical_symbols() == ["Mo", "S", "S"]


def test_scalar_scf_has_no_spin_orbit(atoms):
    text = build_pw_input(PwJob("scf", atoms, load_preset("quick"), {"Mo": "Mo.rel1.UPF", "S": "S.rel1.UPF"},
                                "./pseudo", spin_orbit=False, kmesh=(6, 6, 1)))
    assert "noncolin" not in text and "lspinorb" not in text


def test_bands_input_lists_gamma_and_k_explicitly(atoms):
    k, _ = gamma_k_list()
    text = build_pw_input(PwJob("bands", atoms, load_preset("quick"), {"Mo": "a", "S": "b"},
                                "./pseudo", spin_orbit=True, kpoints=k, nbnd=42))
    assert "calculation = 'bands'" in text and "nbnd = 42" in text
    block = text.split("K_POINTS crystal\n")[1].splitlines()
    assert block[0].strip() == "3"
    rows = np.array([[float(x) for x in line.split()] for line in block[1:4]])
    assert np.allclose(rows[1, :3], [1 / 3, 1 / 3, 0]) and np.allclose(rows[2, :3], [-1 / 3, -1 / 3, 0])
    assert "tprnfor" not in text  # no forces in a non-SCF run


def test_non_scf_runs_get_the_preset_davidson_threshold_not_one_derived_from_conv_thr(atoms):
    # pw.x would otherwise use 0.1 * conv_thr / N_el (3.8e-12 Ry at the paper preset)
    paper = load_preset("paper")
    k, _ = gamma_k_list()
    bands = build_pw_input(PwJob("bands", atoms, paper, {"Mo": "a", "S": "b"}, "./pseudo",
                                 spin_orbit=True, kpoints=k, nbnd=42))
    scf = build_pw_input(PwJob("scf", atoms, paper, {"Mo": "a", "S": "b"}, "./pseudo", spin_orbit=True))
    value = re.search(r"diago_thr_init = (\S+)", bands).group(1)
    assert float(value.replace("d", "e")) == paper.nscf_diago_thr
    assert f"diago_david_ndim = {paper.diago_david_ndim}" in bands and f"diago_david_ndim = {paper.diago_david_ndim}" in scf
    assert "diago_thr_init" not in scf  # SCF: pw.x tightens the threshold itself as it converges


def test_nonpositive_davidson_threshold_or_too_small_working_space_is_refused():
    with pytest.raises(InputError, match="nscf_diago_thr"):
        load_preset("quick", {"nscf_diago_thr": 0.0})
    with pytest.raises(InputError, match="diago_david_ndim"):
        load_preset("quick", {"diago_david_ndim": 1})


def test_relaxation_criteria_come_from_the_preset(atoms, tmp_path):
    default = build_pw_input(PwJob("vc-relax", atoms, load_preset("quick"), {"Mo": "a", "S": "b"}, "./pseudo",
                                   spin_orbit=False, kmesh=(6, 6, 1), cell_dofree="2Dxy"))
    assert float(re.search(r"forc_conv_thr = (\S+)", default).group(1).replace("d", "e")) == 5e-4  # 0.5 mRy/bohr
    assert float(re.search(r"press_conv_thr = (\S+)", default).group(1)) == 0.5
    tight = load_preset("quick", {"relax_forc_conv_thr": 1e-4, "relax_press_conv_thr": 0.1})
    text = build_pw_input(PwJob("vc-relax", atoms, tight, {"Mo": "a", "S": "b"}, "./pseudo",
                                spin_orbit=False, kmesh=(6, 6, 1), cell_dofree="2Dxy"))
    assert float(re.search(r"forc_conv_thr = (\S+)", text).group(1).replace("d", "e")) == 1e-4
    assert float(re.search(r"press_conv_thr = (\S+)", text).group(1)) == 0.1
    assert "cell_dofree = '2Dxy'" in text
    fixed_cell = build_pw_input(PwJob("relax", atoms, tight, {"Mo": "a", "S": "b"}, "./pseudo",
                                      spin_orbit=False, kmesh=(6, 6, 1)))
    assert "press_conv_thr" not in fixed_cell and "forc_conv_thr" in fixed_cell
    scf = build_pw_input(PwJob("scf", atoms, tight, {"Mo": "a", "S": "b"}, "./pseudo", spin_orbit=False))
    assert "conv_thr = " in scf and "forc_conv_thr" not in scf and "press_conv_thr" not in scf
    ase.io.read(_write(tmp_path, text), format="espresso-in")  # still a valid pw.x input


@pytest.mark.parametrize("key", ["relax_forc_conv_thr", "relax_press_conv_thr"])
def test_nonpositive_relaxation_criteria_are_refused(key):
    with pytest.raises(InputError, match=key):
        load_preset("quick", {key: 0.0})
