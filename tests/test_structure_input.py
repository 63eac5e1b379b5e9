"""Starting geometries from users' CIF / POSCAR files, and workflows that use them."""

import numpy as np
import pytest
from ase.io import write

from tmdflow.errors import InputError
from tmdflow.structure_input import read_geometry
from tmdflow.structures import build_bulk_2h, build_monolayer
from tmdflow.workflow_spec import load_workflow


def test_monolayer_cif_and_bulk_poscar_give_the_builders_parameters(tmp_path):
    write(tmp_path / "ml.cif", build_monolayer("WSe2", 3.31, 1.68, 20))
    write(tmp_path / "POSCAR", build_bulk_2h("MoTe2", 3.519, 13.964, 0.129), format="vasp")
    ml, bulk = read_geometry(tmp_path / "ml.cif"), read_geometry(tmp_path / "POSCAR")
    assert (ml.formula, ml.dimensionality) == ("WSe2", "monolayer")
    assert ml.a == pytest.approx(3.31, abs=1e-6) and ml.d == pytest.approx(1.68, abs=1e-6)
    assert (bulk.formula, bulk.dimensionality) == ("MoTe2", "bulk")
    assert (bulk.a, bulk.c, bulk.z) == pytest.approx((3.519, 13.964, 0.129), abs=1e-6)


def test_a_layer_across_the_cell_boundary_and_pymatgen_cif(tmp_path):
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = build_monolayer("MoS2", 3.19, 1.57, 15)
    atoms.translate([0, 0, -atoms.positions[0, 2]])  # metal at z = 0: the bottom S wraps to the top
    atoms.wrap()
    AseAtomsAdaptor.get_structure(atoms).to(filename=str(tmp_path / "m.cif"))
    g = read_geometry(tmp_path / "m.cif")
    assert g.a == pytest.approx(3.19, abs=1e-4) and g.d == pytest.approx(1.57, abs=1e-4)


def test_other_polytypes_and_compositions_are_refused(tmp_path):
    one_t = build_monolayer("MoS2", 3.19, 1.57, 15)
    pos = one_t.get_scaled_positions()
    pos[2, :2] = [2 / 3, 1 / 3]  # octahedral (1T) coordination: P-3m1
    one_t.set_scaled_positions(pos)
    write(tmp_path / "1T.cif", one_t)
    with pytest.raises(InputError, match=r"space group 164 is neither a D3h monolayer(.|\n)*2H polytype"):
        read_geometry(tmp_path / "1T.cif")
    write(tmp_path / "x.cif", build_monolayer("MoS2", 3.19, 1.57, 15)[:2])
    with pytest.raises(InputError, match="not MX2"):
        read_geometry(tmp_path / "x.cif")
    with pytest.raises(InputError, match="not found"):
        read_geometry(tmp_path / "missing.cif")


def test_workflow_structure_files_are_read_at_load_with_line_numbers(tmp_path):
    write(tmp_path / "wse2.cif", build_monolayer("WSe2", 3.30, 1.69, 20))
    (tmp_path / "wf.yaml").write_text("name: u\nmaterials: [WSe2, MoS2]\nstructure_files:\n  WSe2: wse2.cif\n")
    spec = load_workflow(tmp_path / "wf.yaml")
    assert spec.geometry("WSe2", "monolayer")["a"] == pytest.approx(3.30)
    assert spec.geometry("MoS2", "monolayer") is None
    from tmdflow.fireworks import build_workflows

    wse2 = next(w for w in build_workflows(spec) if "WSe2" in w.name)
    assert wse2.fws[0].tasks[0]["geometry"]["d"] == pytest.approx(1.69)
    (tmp_path / "bad.yaml").write_text("name: u\nmaterials: [MoS2]\nstructure_files:\n  MoS2: wse2.cif\n")
    with pytest.raises(InputError, match=r"bad.yaml:4: structure_files.MoS2: the file holds WSe2"):
        load_workflow(tmp_path / "bad.yaml")


def test_initial_structure_uses_the_users_geometry():
    from tmdflow.presets import load_preset
    from tmdflow.steps import initial_structure

    atoms = initial_structure("WSe2", "monolayer", load_preset("test"), {"a": 3.30, "d": 1.69})
    assert np.linalg.norm(atoms.cell[0]) == pytest.approx(3.30)
    assert abs(atoms.positions[1, 2] - atoms.positions[0, 2]) == pytest.approx(1.69)
