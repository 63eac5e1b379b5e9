"""The slab-stress check of monolayer relaxations (tmdflow.analysis.slab_stress, tmdflow.relax_ladder)
on a real vc-relax: WSe2 with the pslibrary 1.0.0 Se file (3d in valence) relaxed at 60/480 Ry
in session 11, whose sigma_zz of -2.93 kbar exposed a Pulay-stress artefact (docs/physics.md)."""

import shutil

import numpy as np
import pytest

from tmdflow.analysis.slab_stress import raised_cutoffs, slab_stress
from tmdflow.calculators.espresso.adapter import EspressoCalculator
from tmdflow.calculators.espresso.parsers import parse_pw_stdout, parse_pw_xml
from tmdflow.calculators.espresso.profile import EspressoProfile
from tmdflow.errors import InputError
from tmdflow.presets import load_preset
from tmdflow.calculators.espresso.relax_ladder import cutoff_ladder, rung_directory
from tests.helpers import QE67


SE3D_RELAX = QE67 / "wse2_se3d_paper_relax"


def _check(xml, threshold):
    return slab_stress(xml.stress_gpa, xml.forces_ev_per_angstrom, xml.positions_angstrom, xml.cell_angstrom,
                       threshold)


def test_the_stress_of_a_relaxed_slab_shows_its_basis_set_error():
    xml = parse_pw_xml(SE3D_RELAX / "relax.xml")
    assert xml.calculation == "vc-relax" and xml.relax_converged is True
    # pw.x printed (relax.out, final SCF): sigma_xx = sigma_yy = +0.35 kbar, sigma_zz = -2.93 kbar
    check = _check(xml, threshold=0.5)
    assert check.sigma_xx_kbar == pytest.approx(0.35, abs=0.01)
    assert check.sigma_zz_kbar == pytest.approx(-2.93, abs=0.01)
    # residual forces +-0.0022 eV/A on Se, pointing towards W (relax.out: 0.086 mRy/bohr), at
    # z = +-1.68 A in a 177.5 A^3 cell: (2 x -0.0022 x 1.68 / 177.5) eV/A^3 = -0.07 kbar
    assert check.residual_force_kbar == pytest.approx(-0.068, abs=0.002)
    assert check.sigma_zz_basis_kbar == pytest.approx(-2.87, abs=0.01)
    assert check.in_plane_without_pulay_kbar == pytest.approx(3.21, abs=0.02)
    assert not check.passed  # the in-plane criterion (0.5 kbar) was met, the basis was not converged
    assert "-2.87 kbar at 60/480 Ry (pw.x -2.93" in check.describe(60, 480)
    assert _check(xml, threshold=3.0).passed
    assert _check(xml, threshold=None).passed  # check switched off
    with pytest.raises(ValueError, match="no stress tensor"):
        slab_stress(None, xml.forces_ev_per_angstrom, xml.positions_angstrom, xml.cell_angstrom, 0.5)


def test_the_virial_of_residual_forces_is_removed_from_sigma_zz():
    # the same relaxed structure with breathing forces added by hand: outward forces of 0.01 eV/A on
    # both Se (the D3h-allowed mode) raise sigma_zz by 2 x 0.01 x d / V; sigma_zz^basis is unchanged
    xml = parse_pw_xml(SE3D_RELAX / "relax.xml")
    z = xml.positions_angstrom[:, 2]
    outward = np.zeros((3, 3))
    outward[1:, 2] = 0.01 * np.sign(z[1:] - z[0])
    volume = abs(np.linalg.det(xml.cell_angstrom))
    extra = 2 * 0.01 * abs(z[1] - z[0]) / volume * 1602.176634  # kbar
    stress = xml.stress_gpa.copy()
    stress[2, 2] += extra / 10
    base = _check(xml, 0.5)
    pushed = slab_stress(stress, xml.forces_ev_per_angstrom + outward, xml.positions_angstrom, xml.cell_angstrom, 0.5)
    assert pushed.residual_force_kbar - base.residual_force_kbar == pytest.approx(extra, rel=1e-9)
    assert pushed.sigma_zz_basis_kbar == pytest.approx(base.sigma_zz_basis_kbar, abs=1e-9)


def test_a_finished_relaxation_is_read_back_without_running(tmp_path):
    calc = EspressoCalculator(EspressoProfile(pw_command="/nonexistent/pw.x"))  # nothing may run
    done = calc.finished_relax(SE3D_RELAX, "relax")
    assert done is not None
    result, atoms = done
    assert result.xml.relax_converged and "vc-relax" in result.input_text
    assert np.linalg.norm(atoms.cell[0]) == pytest.approx(3.3098, abs=1e-4)  # docs/physics.md
    assert result.run.wall_seconds > 0
    # an interrupted or failed run is not "finished": the step must run (or resume) it
    assert calc.finished_relax(tmp_path, "relax") is None
    partial = tmp_path / "partial"
    shutil.copytree(SE3D_RELAX, partial)
    (partial / "relax.out").write_text((SE3D_RELAX / "relax.out").read_text().replace("JOB DONE", ""))
    assert calc.finished_relax(partial, "relax") is None
    assert calc.finished_relax(QE67 / "mos2_test_scf_unconverged", step="scf_soc") is None


def test_the_cutoff_ladder_keeps_the_dual_and_names_its_directories(tmp_path):
    paper = load_preset("paper")
    assert paper.relax_stress_zz_thr == 0.5 and paper.relax_cutoff_raises == 2
    assert cutoff_ladder(paper) == [(60.0, 480.0), (80.0, 640.0), (100.0, 800.0)]
    assert cutoff_ladder(load_preset("quick", {"relax_cutoff_raises": 0})) == [(45.0, 360.0)]
    assert raised_cutoffs(45.0, 360.0, 15.0) == (60.0, 480.0)
    assert rung_directory(tmp_path, 0, 60.0, "relax") == tmp_path / "relax"
    assert rung_directory(tmp_path, 1, 80.0, "relax") == tmp_path / "relax-80Ry"


@pytest.mark.parametrize("overrides, message", [
    ({"relax_stress_zz_thr": -1.0}, "relax_stress_zz_thr must be positive"),
    ({"relax_cutoff_step": 0.0}, "need a positive step"),
    ({"relax_cutoff_raises": -1}, "need a positive step and >= 0 raises"),
])
def test_bad_stress_check_settings_are_refused(overrides, message):
    with pytest.raises(InputError, match=message):
        load_preset("paper", overrides)


def _resumable_root(tmp_path):
    """A monolayer run directory whose first relaxation (relax/) finished: session 11's real WSe2 run."""
    root = tmp_path / "WSe2-monolayer-paper"
    shutil.copytree(SE3D_RELAX, root / "relax")
    return root


def _no_pw():
    return EspressoCalculator(EspressoProfile(pw_command="/nonexistent/pw.x", mpi_command=""))


def test_a_resumed_relax_step_reuses_the_finished_relaxation_and_applies_the_check(tmp_path, pseudo_dir):
    from ase import Atoms

    from tmdflow.errors import ExecutableNotFound, PulayStressTooLarge
    from tmdflow.calculators.espresso.relax_ladder import relax_monolayer

    root = _resumable_root(tmp_path)
    corrections = []
    # tolerant enough: the finished relaxation is the answer, nothing runs (pw.x does not exist here)
    relaxation = relax_monolayer(_no_pw(), Atoms(), load_preset("paper", {"relax_stress_zz_thr": 3.0}), root,
                                 {}, (16, 16, 1), corrections, restart=True, step="relax")
    result, atoms, check = relaxation.result, relaxation.atoms, relaxation.check
    assert check.passed and corrections == [] and result.directory == root / "relax"
    assert np.linalg.norm(atoms.cell[0]) == pytest.approx(3.3098, abs=1e-4)
    # the rung record: reused, so it cost nothing now, but the step's CPU is that relaxation's
    (rung,) = relaxation.rungs
    assert rung.reused and rung.passed and (rung.ecutwfc, rung.ecutrho) == (60.0, 480.0)
    assert rung.a_angstrom == pytest.approx(3.3098, abs=1e-4) and rung.sigma_zz_basis_kbar == check.sigma_zz_basis_kbar
    assert relaxation.wall_seconds == 0
    assert relaxation.pw_cpu_seconds == rung.pw_cpu_seconds == parse_pw_stdout(root / "relax" / "relax.out").cpu_seconds
    assert rung.as_output()["directory"] == str(root / "relax")
    # no raise allowed: the check fails with the cut-offs to try next
    with pytest.raises(PulayStressTooLarge, match=r"-2\.87 kbar at 60/480 Ry") as err:
        relax_monolayer(_no_pw(), Atoms(), load_preset("paper", {"relax_cutoff_raises": 0}), root, {}, (16, 16, 1),
                        [], restart=True, step="relax")
    assert "relax_ecutwfc: 80, relax_ecutrho: 640" in str(err.value) and err.value.exit_code == 33
    # one raise allowed: the correction is recorded, then the next rung must run (pw.x is missing)
    corrections = []
    files = {el: pseudo_dir / "pslibrary-paw" / f"{el}.rel1.UPF" for el in ("W", "Se")}
    with pytest.raises(ExecutableNotFound):
        relax_monolayer(_no_pw(), Atoms(), load_preset("paper"), root, files, (16, 16, 1), corrections, restart=True,
                        step="relax")
    (c,) = corrections
    assert c.handler == "slab_pulay_stress" and c.changes == {"relax_ecutwfc": 80.0, "relax_ecutrho": 640.0}
    # the next rung was set up from the finished relaxation's structure, at the raised cut-offs
    rung1 = (root / "relax-80Ry" / "relax.in").read_text()
    assert "ecutwfc = 80" in rung1 and "ecutrho = 640" in rung1
    assert f"{np.linalg.norm(atoms.cell[0]):.10f}" in rung1  # CELL_PARAMETERS: a of the finished relaxation
    assert (root / "relax" / "relax.xml").is_file()  # the finished relaxation is kept


def test_a_resume_refuses_a_ladder_whose_earlier_rung_did_not_finish(tmp_path):
    from ase import Atoms

    from tmdflow.errors import CalculationFailed
    from tmdflow.calculators.espresso.relax_ladder import relax_monolayer

    root = tmp_path / "run"
    (root / "relax").mkdir(parents=True)  # started, never finished
    (root / "relax-80Ry").mkdir()
    with pytest.raises(CalculationFailed, match="relax-80Ry.*did not finish"):
        relax_monolayer(_no_pw(), Atoms(), load_preset("paper"), root, {}, (16, 16, 1), [], restart=True, step="relax")
