"""Elk input side without running Elk: species radius editing, elk.in blocks and digits."""

from __future__ import annotations


import numpy as np
import pytest

from tmdflow.calculators.elk.adapter import SYMMETRY_COUNT, _atoms_from_elk_in, _grid_for
from tmdflow.calculators.elk.inputs import (
    ElkParameters, format_elk_in, read_elk_in_blocks, species_radius, species_with_radius,
)
from tmdflow.errors import InputError
from tmdflow.kpoints import splitting_kpoints_exact
from tmdflow.structures import build_monolayer, spacegroup_number
from tmdflow.units import BOHR_ANGSTROM
from tests.helpers import FIXTURES

FIX = FIXTURES / "elk-8.4"


def params(**kw) -> ElkParameters:
    base = dict(tasks=(0,), ngridk=(6, 6, 1), spinorb=True, rgkmax=7.0, lmaxapw=8, gmaxvr=12.0, nempty=4)
    base.update(kw)
    return ElkParameters(**base)


def test_species_radius_replaced_and_nothing_else():
    text = (FIX / "species" / "Mo.in").read_text()  # Elk 8.4.30's own species file (R_mt 2.6 bohr)
    assert species_radius(text) == pytest.approx(2.6)
    edited = species_with_radius(text, 2.1)
    assert species_radius(edited) == pytest.approx(2.1)
    old, new = text.splitlines(), edited.splitlines()
    assert len(old) == len(new)
    changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert changed == [4]  # the fifth line: rminsp, rmt, rmaxsp, nrmt
    assert old[4].split()[0] == new[4].split()[0] and old[4].split()[2:4] == new[4].split()[2:4]


@pytest.mark.parametrize("bad", [0.2, 5.0])
def test_species_radius_out_of_range(bad):
    with pytest.raises(InputError, match="muffin-tin radius"):
        species_with_radius((FIX / "species" / "Mo.in").read_text(), bad)


def test_not_a_species_file():
    with pytest.raises(InputError, match="not an Elk species file"):
        species_with_radius("tasks\n  0\n", 2.1)


def test_elk_in_digits_and_round_trip(tmp_path):
    atoms = build_monolayer("MoS2", 3.193, 1.567, 15.0)
    text = format_elk_in(atoms, params(kstlist=((15, 26), (15, 27))))
    blocks = read_elk_in_blocks(text)
    assert blocks["tasks"] == ["0"] and blocks["spinorb"] == [".true."] and blocks["ngridk"] == ["6 6 1"]
    assert blocks["kstlist"] == ["15 26", "15 27"]
    assert text.endswith("\n\n")  # Elk reads list blocks up to a blank line ("End of file" otherwise)
    # >= 10 significant digits: lattice in bohr and lattice coordinates (1/3, 2/3 of the chalcogens)
    for line in blocks["avec"]:
        assert all(len(x.split(".")[1]) >= 12 for x in line.split())
    assert blocks["atoms"][1] == "'Mo.in'" and blocks["atoms"][4] == "'S.in'"
    (tmp_path / "elk.in").write_text(text)
    back = _atoms_from_elk_in(tmp_path / "elk.in", None)
    assert np.allclose(back.cell[:], atoms.cell[:], atol=1e-10)
    assert np.allclose(back.get_scaled_positions(), atoms.get_scaled_positions(), atol=1e-13)
    assert spacegroup_number(back, symprec=1e-5) == 187
    cell_bohr = np.array([[float(x) for x in l.split()] for l in blocks["avec"]])
    assert np.allclose(cell_bohr * BOHR_ANGSTROM, atoms.cell[:], atol=1e-12)


def test_bands_grid_holds_the_special_points():
    kpts, labels = splitting_kpoints_exact(0)
    assert labels == ["G", "K", "K'", "M", "Q"]
    assert _grid_for(kpts) == 6  # Gamma, K = (1/3, 1/3), K', M = (1/2, 0), Q = (1/6, 1/6)
    assert _grid_for(splitting_kpoints_exact(9)[0]) == 18
    assert SYMMETRY_COUNT[187] == 12 and SYMMETRY_COUNT[194] == 24
