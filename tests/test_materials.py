import pytest

from tmdflow.errors import InputError
from tmdflow.materials import atomic_mass, get_material, parse_formula


@pytest.mark.parametrize("formula,expected", [("MoS2", ("Mo", "S")), ("WSe2", ("W", "Se")), ("CrTe2", ("Cr", "Te"))])
def test_parse_formula_accepts_any_supported_mx2(formula, expected):
    assert parse_formula(formula) == expected


@pytest.mark.parametrize("bad,word", [("XyS2", "metal"), ("MoO2", "chalcogen"), ("MoS3", "not an MX2"), ("", "not an MX2"), ("mos2", "not an MX2")])
def test_bad_formula_names_the_problem(bad, word):
    with pytest.raises(InputError) as err:
        parse_formula(bad)
    assert word in str(err.value)
    assert "->" in str(err.value)  # a remedy is given


def test_paper_data_come_from_inputs():
    mos2 = get_material("MoS2")
    assert mos2.monolayer.a == pytest.approx(3.193)
    assert mos2.monolayer.d == pytest.approx(1.567)
    assert mos2.bulk.c == pytest.approx(12.295)
    # the paper's z is the vertical M-X offset in units of c: d = z c within rounding
    assert mos2.bulk.z * mos2.bulk.c == pytest.approx(mos2.bulk.d, abs=0.02)


def test_every_paper_bulk_entry_satisfies_d_equals_zc():
    for f in ("MoS2", "MoSe2", "WS2", "WSe2"):
        b = get_material(f).bulk
        assert b.z * b.c == pytest.approx(b.d, abs=0.02), f


def test_masses_are_data():
    assert atomic_mass("W") == pytest.approx(183.84)
    with pytest.raises(InputError):
        atomic_mass("Xx")


def test_supported_material_without_data_has_no_geometry():
    m = get_material("CrS2")
    assert m.bulk is None and m.monolayer is not None
