"""The Elk relaxation: GEOMETRY.OUT / FORCES_OPT.OUT parsers on a real task-2 run, the E(a)
scan and its Birch-Murnaghan fit on real E(a) numbers, the ideal structure rebuilt from Elk's
8-digit positions, the workflow layer; and one real Elk relaxation at tiny settings (marker
``elk``).  Fixtures: tests/fixtures/elk-8.4/README.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tmdflow.calculators import get_calculator
from tmdflow.calculators.elk.parsers import parse_forces_opt, parse_geometry, parse_info
from tmdflow.calculators.elk.relax import (
    fit_lattice_constant, interpolated_height, relaxed_bulk, relaxed_height, relaxed_monolayer,
    scan_lattice_constants, with_in_plane_a,
)
from tmdflow.errors import CalculationFailed, InputError, OutputParseError
from tmdflow.settings import load_settings
from tmdflow.steps.registry import for_calculator as supported_steps
from tmdflow.structures import build_monolayer, monolayer_height, spacegroup_number
from tmdflow.workflow_spec import load_workflow

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "elk-8.4"
RELAX = FIXTURES / "mos2_relax_task2"

#: the lattice constants of a 5-point scan around the paper's a, step 1.5 %
SCAN_A = (3.09721, 3.145105, 3.193, 3.240895, 3.28879)


def test_geometry_out_of_a_real_task2_run():
    g = parse_geometry(RELAX / "GEOMETRY.OUT")
    assert g.symbols == ("Mo", "S", "S")
    assert g.lattice_bohr[0] == pytest.approx([6.033895516, 0, 0])
    assert g.lattice_bohr[2, 2] == pytest.approx(24.81966292)
    # Elk's atomic basis shift: the metal at the origin, the sulphurs at +-z
    assert g.positions_lattice[0] == pytest.approx([0, 0, 0])
    assert g.positions_lattice[1] == pytest.approx([1 / 3, 2 / 3, 0.11742823], abs=1e-8)
    assert g.positions_lattice[2] == pytest.approx([1 / 3, 2 / 3, 0.88257177], abs=1e-8)


def test_forces_opt_of_a_real_task2_run():
    f = parse_forces_opt(RELAX / "FORCES_OPT.OUT")
    assert f.converged and f.n_steps == 6 and f.target_ha_bohr == pytest.approx(5e-4)
    assert f.max_forces_ha_bohr[0] == pytest.approx(0.01013482449)
    assert f.max_forces_ha_bohr[-1] == pytest.approx(2.956672123e-4) and f.max_forces_ha_bohr[-1] < f.target_ha_bohr
    assert f.final_forces_ha_bohr.shape == (3, 3)
    assert np.abs(f.final_forces_ha_bohr[:, :2]).max() < 1e-7  # along z only (the symmetry)
    assert f.final_forces_ha_bohr[1, 2] == pytest.approx(-f.final_forces_ha_bohr[2, 2])
    # INFO.OUT of a task-2 run holds its last optimisation step: converged, full symmetry
    info = parse_info(RELAX / "INFO.OUT")
    assert info.converged and info.stopped and info.n_crystal_symmetries == 12
    assert info.total_energy_ha == pytest.approx(-4848.22562947)


def test_forces_opt_without_convergence_is_read_as_such():
    text = (RELAX / "FORCES_OPT.OUT").read_text()
    cut = text.replace("Force convergence target achieved", "")  # as when the steps run out
    f = parse_forces_opt(cut)
    assert not f.converged and f.n_steps == 6
    truncated = text[: text.index("Atomic position optimisation step :      3")] + \
        "Atomic position optimisation step :      3\n\nForces :\n"
    with pytest.raises(OutputParseError, match="step 3 has no 'Maximum force magnitude'"):
        parse_forces_opt(truncated)


def test_parsers_refuse_other_files():
    with pytest.raises(OutputParseError, match="no 'avec' block"):
        parse_geometry((RELAX / "FORCES_OPT.OUT").read_text())
    with pytest.raises(OutputParseError, match="not an Elk FORCES_OPT.OUT"):
        parse_forces_opt((RELAX / "GEOMETRY.OUT").read_text())


def test_the_ideal_monolayer_is_rebuilt_from_geometry_out():
    g = parse_geometry(RELAX / "GEOMETRY.OUT")
    d = relaxed_height(g, "MoS2")
    assert d == pytest.approx(0.11742823 * 24.81966292 * 0.529177210903, abs=1e-6)  # 1.5423 A
    atoms, d2 = relaxed_monolayer(g, "MoS2", 15.0)
    assert d2 == d and monolayer_height(atoms) == pytest.approx(d, abs=1e-9)
    assert atoms.cell[0, 0] == pytest.approx(3.193, abs=1e-8)
    assert atoms.cell[2, 2] == pytest.approx(2 * d + 15.0)
    assert spacegroup_number(atoms, symprec=1e-5) == 187  # full digits again


def test_a_broken_prism_is_refused():
    g = parse_geometry(RELAX / "GEOMETRY.OUT")
    pos = g.positions_lattice.copy()
    pos[1, 2] += 1e-3  # one sulphur higher than the other: the mirror plane is lost
    with pytest.raises(CalculationFailed, match="the mirror plane was lost"):
        relaxed_height(type(g)(g.lattice_bohr, g.symbols, pos), "MoS2")
    pos = g.positions_lattice.copy()
    pos[2, 0] += 0.01
    with pytest.raises(CalculationFailed, match="not the trigonal prism"):
        relaxed_height(type(g)(g.lattice_bohr, g.symbols, pos), "MoS2")
    with pytest.raises(CalculationFailed, match="not WSe2"):
        relaxed_height(g, "WSe2")


def test_bulk_z_from_a_2h_geometry():
    # GEOMETRY.OUT of 2H bulk is written like the monolayer's: build one from tmdflow's own
    # 2H structure (Elk's basis shift applied) and read z back
    from tmdflow.calculators.elk.parsers import ElkGeometry
    from tmdflow.structures import build_bulk_2h
    from tmdflow.units import BOHR_ANGSTROM

    bulk = build_bulk_2h("MoS2", 3.160, 12.295, 0.127)
    pos = bulk.get_scaled_positions() - bulk.get_scaled_positions()[0]
    geometry = ElkGeometry(bulk.cell[:] / BOHR_ANGSTROM, tuple(bulk.get_chemical_symbols()),
                           np.round(pos % 1.0, 8))
    atoms, z = relaxed_bulk(geometry, "MoS2")
    assert z == pytest.approx(0.127, abs=1e-8) and spacegroup_number(atoms, symprec=1e-5) == 194


def test_scan_points_and_in_plane_scaling():
    a = scan_lattice_constants(3.193, 5, 0.015)
    assert a == pytest.approx(SCAN_A, abs=1e-6)
    with pytest.raises(InputError, match="at least 4"):
        scan_lattice_constants(3.193, 3, 0.01)
    m = build_monolayer("MoS2", 3.193, 1.567, 10.0)
    s = with_in_plane_a(m, 3.3)
    assert s.cell[0, 0] == pytest.approx(3.3) and s.cell[2, 2] == m.cell[2, 2]
    assert monolayer_height(s) == pytest.approx(1.567) and spacegroup_number(s, symprec=1e-5) == 187
    assert interpolated_height([3.0, 3.2, 3.1], [1.6, 1.5, 1.55], 3.15) == pytest.approx(1.525)
