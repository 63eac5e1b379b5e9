"""WIEN2k adapter without WIEN2k: golden inputs, parsers on files in WIEN2k's formats, failure
modes, and the adapter's steps against the fake installation in tests/fake_wien2k (a test
double: it checks what it receives and answers in WIEN2k's formats from a made-up model)."""

import os
import shutil
from fractions import Fraction

import numpy as np
import pytest

from tmdflow.calculators.jobs import BandsJob, RelaxJob, ScfJob
from tmdflow.calculators.wien2k.adapter import Wien2kCalculator
from tmdflow.calculators.wien2k.inputs import (
    edit_in1, format_inso, format_klist_band, format_machines, in1_basis, kgen_answers, parse_klist_band,
    rlo_energies,
)
from tmdflow.calculators.wien2k.parsers import electrons_from_in2, energy_files, parse_energy, parse_scf
from tmdflow.calculators.wien2k.profile import Wien2kProfile
from tmdflow.calculators.wien2k.struct import format_struct, parse_struct, struct_from_atoms
from tmdflow.errors import (
    CalculationFailed, ExecutableNotFound, InputError, OutputParseError, ScfNotConverged, StructureSymmetryError,
)
from tmdflow.kpoints import splitting_kpoints_exact
from tmdflow.presets import load_preset
from tmdflow.structures import build_bulk_2h, build_monolayer, spacegroup_number
from tmdflow.units import BOHR_ANGSTROM, RYDBERG_EV
from tests.helpers import FAKE_WIEN2K, FIXTURES

W2K = FIXTURES / "wien2k"
FAKE = FAKE_WIEN2K


def _monolayer():
    return build_monolayer("MoS2", 3.183, 1.563, 30.0)  # the paper's Table I geometry


def _bulk():
    return build_bulk_2h("MoS2", 3.160, 12.295, 0.121)


# -- golden inputs ---------------------------------------------------------------------------
def test_struct_matches_golden_files():
    assert format_struct(struct_from_atoms(_monolayer(), 2.1, "MoS2 (tmdflow)")) == \
        (W2K / "golden_monolayer.struct").read_text()
    assert format_struct(struct_from_atoms(_bulk(), 2.1, "MoS2 (tmdflow)")) == (W2K / "golden_bulk.struct").read_text()


def test_struct_has_the_crystallographic_multiplicities_and_fixed_columns():
    text = (W2K / "golden_bulk.struct").read_text().splitlines()
    assert text[1][:4] == "H   " and int(text[1][27:30]) == 2  # 2 inequivalent sites
    assert text[3][50:60] == "120.000000"  # gamma; 6F10.6 fields touch
    assert abs(float(text[3][:10]) - 3.160 / BOHR_ANGSTROM) < 1e-6  # a in bohr
    mult = [int(l[15:17]) for l in text if "MULT=" in l]
    assert mult == [2, 4]  # Mo 2c, S 4f of P6_3/mmc (ASE's writer would write 1 for every atom)
    rmts = [float(l[40:50]) for l in text if "RMT=" in l]
    assert rmts == [2.1, 2.1]
    ml = parse_struct((W2K / "golden_monolayer.struct").read_text())
    assert [s.multiplicity for s in ml.sites] == [1, 2]  # Mo 1a, S 2h of P-6m2


@pytest.mark.parametrize("build", [_monolayer, _bulk])
def test_struct_round_trip_keeps_structure_and_symmetry(build):
    atoms = build()
    back = parse_struct(format_struct(struct_from_atoms(atoms, 2.1, "x"))).to_atoms()
    assert len(back) == len(atoms)
    assert np.allclose(back.cell[:], atoms.cell[:], atol=1e-5)
    assert spacegroup_number(back) == spacegroup_number(atoms)
    for sym in ("Mo", "S"):
        a = sorted(map(tuple, np.round(atoms.get_scaled_positions()[atoms.symbols == sym], 6)))
        b = sorted(map(tuple, np.round(back.get_scaled_positions()[back.symbols == sym], 6)))
        assert np.allclose(a, b, atol=2e-8)


def test_struct_written_by_wien2k_with_symmetry_operations_parses():
    s = parse_struct((W2K / "wien2k_written.struct").read_text())
    assert s.spacegroup == "187_P-6m2" and s.n_symmetry_operations == 12
    assert spacegroup_number(s.to_atoms()) == 187
    assert format_struct(s) == (W2K / "wien2k_written.struct").read_text()  # operations kept verbatim


def test_in1_edit_inso_klist_machines_kgen_match_golden_files():
    in1 = (W2K / "init_written.in1c").read_text()
    assert edit_in1(in1, 7.0, 10) == (W2K / "golden_scf.in1c").read_text()
    so = edit_in1(in1, 7.0, 10, emax_above_ef=5.0)
    assert so == (W2K / "golden_so.in1c").read_text()
    assert in1_basis(so) == (7.0, 10, 5.0)
    assert rlo_energies(in1, [1]) == {1: -2.81}  # the Mo semicore p energy lstart chose
    assert format_inso({1: -2.81}) == (W2K / "golden.inso").read_text()
    kpts, labels = splitting_kpoints_exact(12)
    assert format_klist_band(kpts, labels) == (W2K / "golden.klist_band").read_text()
    assert format_machines(["node1", "node1"]) == (W2K / "golden.machines").read_text()
    assert kgen_answers((16, 16, 1), False) == (W2K / "golden_kgen_monolayer.txt").read_text()
    assert kgen_answers((16, 16, 3), True) == (W2K / "golden_kgen_bulk.txt").read_text()
    assert kgen_answers((16, 16, 1), False).splitlines()[0] == "0"  # no inversion added for D3h


def test_klist_band_is_exact_and_round_trips():
    kpts, labels = splitting_kpoints_exact(90)
    text = format_klist_band(kpts, labels)
    back, names = parse_klist_band(text)
    assert names[:5] == ["G", "K", "K'", "M", "Q"]
    assert back[1] == (1 / 3, 1 / 3, 0.0)  # K exactly, as integer / common divisor
    assert np.allclose(back, [[float(x) for x in k] for k in kpts], atol=0)
    first = text.splitlines()[1]
    assert len(first) == 55 and int(first[40:50]) % 6 == 0  # A10,4I10,F5.1; divisor has 1/3 and 1/6


# -- parsers -------------------------------------------------------------------------------
def test_scf_parser_reads_iterations_gap_and_warnings():
    scf = parse_scf(W2K / "MoS2.scf")
    assert scf.n_iterations == 3
    assert scf.total_energies_ry == (-8400.65012211, -8400.65134890, -8400.65135122)
    assert scf.fermi_energy_ry == pytest.approx(0.3372110043)
    assert scf.charge_distances == (0.0230171, 0.0004110, 0.0000391)
    assert scf.gap_ev == pytest.approx(1.729)  # the last global gap, not the per-spin line
    assert len(scf.warnings) == 1 and "QTL-B" in scf.warnings[0]
    assert scf.converged(1e-4, 1e-4) and not scf.converged(1e-7, 1e-4) and not scf.converged(1e-4, 1e-5)


def test_energyso_parser_reads_fixed_columns_and_converts_rydberg():
    e = parse_energy(W2K / "MoS2.energyso", n_inequivalent_atoms=2)
    assert [k.name for k in e.kpoints] == ["GAMMA", "K", "K'"]
    assert np.allclose(e.coordinates[2], [-1 / 3, -1 / 3, 0], atol=1e-12)  # touching negative fields
    assert e.kpoints[1].n_basis == 1873 and e.kpoints[1].weight == 1.0
    ev = e.eigenvalues_ry() * RYDBERG_EV
    assert ev[1, 3] - ev[1, 2] == pytest.approx((0.4070 - 0.3961) * 13.605693, abs=1e-6)


def test_energy_parser_errors_name_the_problem(tmp_path):
    with pytest.raises(OutputParseError, match="inequivalent atoms"):
        parse_energy(W2K / "MoS2.energyso", n_inequivalent_atoms=1)  # header length wrong
    lines = (W2K / "MoS2.energyso").read_text().splitlines()
    (tmp_path / "cut.energyso").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(OutputParseError, match="interrupted"):
        parse_energy(tmp_path / "cut.energyso", 2)
    with pytest.raises(OutputParseError, match="not found"):
        parse_energy(tmp_path / "missing.energyso", 2)


def test_parallel_energy_parts_are_found_in_order(tmp_path):
    for i in (2, 1, 10):
        (tmp_path / f"c.energyso_{i}").write_text("")
    assert [p.name for p in energy_files(tmp_path, "c", "energyso")] == ["c.energyso_1", "c.energyso_2", "c.energyso_10"]


def test_electron_count_from_in2():
    assert electrons_from_in2("TOT\n  -9.0      26.0   0.50 0.05  1   EMIN, NE\n") == 26.0


# -- machine side and failure modes -----------------------------------------------------------
def test_missing_wienroot_is_refused_with_the_fix(monkeypatch):
    monkeypatch.delenv("WIENROOT", raising=False)
    with pytest.raises(ExecutableNotFound, match="WIENROOT is not set"):
        Wien2kProfile(None).check()


def test_missing_programs_are_named(tmp_path):
    (tmp_path / "run_lapw").write_text("#!/bin/sh\n")
    with pytest.raises(ExecutableNotFound, match="init_lapw.*save_lapw.*x"):
        Wien2kProfile(tmp_path).check()


@pytest.fixture
def fake_wien2k(monkeypatch):
    monkeypatch.setenv("WIENROOT", str(FAKE))
    monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{os.environ['PATH']}")
    for var in ("FAKE_WIEN2K_SYMMETRY", "FAKE_WIEN2K_RMT", "FAKE_WIEN2K_WARN", "FAKE_WIEN2K_NOT_CONVERGED"):
        monkeypatch.delenv(var, raising=False)
    return Wien2kCalculator(Wien2kProfile(FAKE, parallel_jobs=2))


def _job(kind, directory, atoms=None, expected=187, **fields):
    """A calculator job of the test preset run in ``directory`` (tmdflow.calculators.jobs)."""
    from tmdflow.layout import RunLayout

    step = {ScfJob: "scf_soc" if fields.get("spin_orbit") else "scf_sr", BandsJob: "bands_soc", RelaxJob: "relax"}[kind]
    extra = {ScfJob: {"continues_from": ("scf_sr",)}, BandsJob: {"potential_from": ("scf_soc", "scf_sr")},
             RelaxJob: {}}[kind]
    return kind(step=step, formula="MoS2", dimensionality="monolayer", atoms=atoms or _monolayer(),
                preset=load_preset("test"), layout=RunLayout(directory), kmesh=(6, 6, 1), expected_spacegroup=expected,
                directory=directory, **{**extra, **fields})


def _scf(calc, tmp_path, atoms=None, spin_orbit=False, expected=187):
    return calc.scf(_job(ScfJob, tmp_path / "MoS2", atoms, expected, spin_orbit=spin_orbit))


def test_scf_runs_init_kgen_and_checks_convergence(fake_wien2k, tmp_path):
    result = _scf(fake_wien2k, tmp_path)
    case = tmp_path / "MoS2"
    assert "init_lapw -b -vxc 13 -ecut -6 -rkmax 7 -numk 36" in result.input_text
    assert (case / "MoS2.klist").read_text().find("div: (   6   6   1)") > 0  # kgen got the divisions
    assert in1_basis((case / "MoS2.in1c").read_text())[:2] == (7.0, 10)  # complex case: no inversion
    assert (case / "scf_sr" / "MoS2.scf").is_file()  # save_lapw -d scf_sr
    assert result.outputs()["total_energy_ev"] == pytest.approx(parse_scf(case / "MoS2.scf").total_energy_ry * RYDBERG_EV)
    so = fake_wien2k.scf(_job(ScfJob, case, spin_orbit=True))
    assert "run_lapw -so" in so.input_text
    assert (case / "MoS2.inso").is_file() and (case / "MoS2.in2c").is_file()
    assert in1_basis((case / "MoS2.in1c").read_text())[2] == 5.0  # spin-orbit energy window


def test_spin_orbit_needs_the_scalar_relativistic_case_first(fake_wien2k, tmp_path):
    with pytest.raises(InputError, match="scf_sr"):
        _scf(fake_wien2k, tmp_path, spin_orbit=True)


@pytest.mark.parametrize("switch, value, error, message", [
    ("FAKE_WIEN2K_SYMMETRY", "break", StructureSymmetryError, "changed the symmetry.*156"),  # sgroup moved an atom
    ("FAKE_WIEN2K_RMT", "2.35", InputError, "sphere radii"),  # setrmt in batch init
    ("FAKE_WIEN2K_WARN", "1", CalculationFailed, "QTL-B"),  # :WARN line in case.scf
    ("FAKE_WIEN2K_NOT_CONVERGED", "1", ScfNotConverged, "not converged after 12 iterations"),
])
def test_wien2k_failure_modes_are_named_errors(fake_wien2k, tmp_path, monkeypatch, switch, value, error, message):
    monkeypatch.setenv(switch, value)
    with pytest.raises(error, match=message):
        _scf(fake_wien2k, tmp_path)


def test_a_failing_program_is_reported_with_its_error_file(fake_wien2k, tmp_path):
    from tmdflow.calculators.wien2k.adapter import Wien2kStepResult

    case = tmp_path / "MoS2"
    case.mkdir()
    shutil.copyfile(W2K / "golden_monolayer.struct", case / "MoS2.struct")
    with pytest.raises(CalculationFailed, match="x lapw7.*x.error"):
        fake_wien2k._run(["x", "lapw7"], case, "lapw7.log", Wien2kStepResult("t", case, "", ""))


def test_bands_need_a_converged_case(fake_wien2k, tmp_path):
    with pytest.raises(InputError, match="no converged SCF"):
        kpts, labels = splitting_kpoints_exact(0)
        fake_wien2k.bands(_job(BandsJob, tmp_path / "MoS2", kpoints=tuple(kpts), labels=tuple(labels)))


def test_bands_give_the_models_splitting_through_the_shared_analysis(fake_wien2k, tmp_path):
    from tmdflow.analysis.splitting import analyze_bands

    _scf(fake_wien2k, tmp_path)
    fake_wien2k.scf(_job(ScfJob, tmp_path / "MoS2", spin_orbit=True))
    kpts, labels = splitting_kpoints_exact(12)
    fake_wien2k.bands(_job(BandsJob, tmp_path / "MoS2", kpoints=tuple(kpts), labels=tuple(labels)))
    bands = fake_wien2k.read_spin_orbit_bands(tmp_path / "MoS2", tuple(labels), step="bands_soc")
    assert len(bands.kpoints_crystal) == len(kpts)  # parts _1, _2 of the -p run joined in order
    s = analyze_bands(bands)
    assert s.delta_vb_k_mev == pytest.approx(0.0110 * RYDBERG_EV * 1000, abs=1e-6)  # the model's lambda
    assert s.delta_vb_kprime_mev == pytest.approx(s.delta_vb_k_mev)
    assert s.direct_gap_at_k and not s.delta_cb_sign_known  # no spin texture from WIEN2k here
    sr = fake_wien2k.read_scalar_bands(tmp_path / "MoS2", step="bands_soc")
    assert sr.eigenvalues.shape[1] * 2 == bands.eigenvalues.shape[1] and not sr.spinor


def test_relaxation_fits_the_lattice_constant_and_moves_the_atoms(fake_wien2k, tmp_path, monkeypatch):
    a_true_bohr = 3.20 / BOHR_ANGSTROM * 1.003
    monkeypatch.setenv("FAKE_WIEN2K_A_TRUE", str(a_true_bohr))
    result = fake_wien2k.relax(_job(RelaxJob, tmp_path / "relax", variable_cell=True))
    relaxed = result.relaxed_atoms
    scan = result.outputs()["lattice_scan"]
    assert len(scan["a_angstrom"]) == 5
    a = float(np.linalg.norm(relaxed.cell[0]))
    assert a == pytest.approx(a_true_bohr * BOHR_ANGSTROM, rel=2e-4)  # EOS fit of the model's parabola
    z = relaxed.positions[:, 2]
    assert abs(z[1] - z[0]) == pytest.approx(2.95 * BOHR_ANGSTROM, abs=1e-6)  # the model's height
    assert spacegroup_number(relaxed) == 187 and relaxed.get_chemical_symbols()[0] == "Mo"
