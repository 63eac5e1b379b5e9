import warnings

import numpy as np
import pytest

from tmdflow.errors import InputError, StructureSymmetryError
from tmdflow.structures import (
    build_bulk_2h, build_monolayer, check_spacegroup, monolayer_height, spacegroup_number, vacuum_of,
)


@pytest.mark.parametrize("formula", ["MoS2", "MoSe2", "WS2", "WSe2", "CrTe2"])
def test_monolayer_is_d3h_p6m2_with_requested_d_and_vacuum(formula):
    atoms = build_monolayer(formula, 3.2, 1.6, vacuum=30.0)
    assert spacegroup_number(atoms) == 187
    assert monolayer_height(atoms) == pytest.approx(1.6, abs=1e-9)
    assert vacuum_of(atoms) == pytest.approx(30.0, abs=1e-9)
    assert atoms.cell.cellpar()[:2] == pytest.approx([3.2, 3.2])
    assert atoms.cell.cellpar()[5] == pytest.approx(120.0)


def test_monolayer_has_no_inversion_but_bulk_has():
    import spglib

    mono = build_monolayer("MoS2", 3.193, 1.567)
    bulk = build_bulk_2h("MoS2", 3.160, 12.295, 0.127)

    def has_inversion(atoms):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers))
        rots = ds.rotations if hasattr(ds, "rotations") else ds["rotations"]
        return any(np.array_equal(r, -np.eye(3, dtype=int)) for r in rots)

    assert not has_inversion(mono)
    assert has_inversion(bulk)


@pytest.mark.parametrize("formula,a,c,z", [("MoS2", 3.160, 12.295, 0.127), ("WSe2", 3.280, 12.950, 0.130)])
def test_bulk_is_p63mmc_with_vertical_offset_zc(formula, a, c, z):
    atoms = build_bulk_2h(formula, a, c, z)
    assert spacegroup_number(atoms) == 194
    zpos = atoms.positions[:, 2]
    metal_z, chalco_z = zpos[0], zpos[2:]
    assert np.min(np.abs(chalco_z - metal_z)) == pytest.approx(z * c, abs=1e-9)


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(a=-3.2, d=1.6), "positive"),
        (dict(a=0, d=1.6), "positive"),
        (dict(a=3.2, d=-1.0), "positive"),
        (dict(a=3.2, d=1.6, vacuum=8.0), "below 10"),
        (dict(a="abc", d=1.6), "number"),
        (dict(a=3.2, d=4.0), "exceeds"),
    ],
)
def test_bad_geometry_is_refused_with_a_remedy(kwargs, word):
    with pytest.raises(InputError) as err:
        build_monolayer("MoS2", **kwargs)
    assert word in str(err.value)


def test_symmetry_check_refuses_a_distorted_cell():
    atoms = build_monolayer("MoS2", 3.193, 1.567)
    atoms.positions[1, 0] += 0.05
    with pytest.raises(StructureSymmetryError, match="expected No. 187"):
        check_spacegroup(atoms, 187, "distorted MoS2")


def test_bulk_refuses_overlapping_layers():
    with pytest.raises(InputError, match="below 0.25"):
        build_bulk_2h("MoS2", 3.16, 12.3, 0.3)
