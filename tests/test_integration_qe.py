"""End-to-end runs of the real pw.x / bands.x (test preset: 3x3x1, 45/360 Ry, 10 A vacuum).

Tolerances: Delta_VB(K) within 10 meV of the paper (the issue's acceptance bound).  Measured
with these settings: MoS2 147.7 meV (paper 148), WS2 ~416-430 meV (paper 426); the residual is
the pseudopotential-vs-all-electron difference and the cut-off (docs/physics.md).
"""

import json

import pytest
from click.testing import CliRunner

from tmdflow.cli import main
from tmdflow.compute import compute_material
from tmdflow.errors import ExecutableNotFound, PseudopotentialError, ScfNotConverged
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings

pytestmark = pytest.mark.qe


def test_cli_compute_mos2_json(qe_settings, monkeypatch):
    monkeypatch.setenv("TMDFLOW_PSEUDO_DIR", str(qe_settings.pseudo_dir))
    monkeypatch.setenv("TMDFLOW_NPROCS", str(qe_settings.nprocs))
    result = CliRunner().invoke(
        main, ["compute", "MoS2", "--preset", "test", "--json", "--work-dir", str(qe_settings.work_dir)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)[0]
    s = data["splitting"]
    assert s["delta_vb_k_mev"] == pytest.approx(148, abs=10)
    assert s["delta_cb_sign_known"] and s["delta_cb_k_mev"] > 0  # MoX2: lowest CB has the top-VB spin
    assert s["spin_reversed_at_kprime"] and s["delta_vb_kprime_mev"] == pytest.approx(s["delta_vb_k_mev"], abs=0.5)
    assert abs(s["vb_k_sigma_z"][0]) > 0.95  # fully out-of-plane polarised
    assert s["direct_gap_at_k"]
    assert data["steps"][0]["converged"] is True and data["steps"][0]["qe_version"].startswith("6.")
    assert set(data["pseudopotentials"]) == {"Mo", "S"}
    assert data["scratch_freed_bytes"] > 0  # wavefunction scratch removed


def test_ws2_splitting_and_opposite_conduction_spin_order(qe_settings):
    r = compute_material("WS2", load_preset("test"), qe_settings)
    assert r.splitting.delta_vb_k_mev == pytest.approx(426, abs=10)
    assert r.splitting.delta_cb_sign_known and r.splitting.delta_cb_k_mev < -10  # WX2: opposite spin
    assert r.splitting.direct_gap_at_k


def test_unconverged_scf_is_a_named_error(qe_settings, pseudo_dir):
    """At the adapter level (no correction handler): 3 iterations cannot converge."""
    from tmdflow.calculators.espresso.adapter import EspressoCalculator
    from tmdflow.pseudo import ensure_pseudopotentials
    from tmdflow.structures import build_monolayer

    ps = ensure_pseudopotentials(["Mo", "S"], "pslibrary-paw", pseudo_dir, rels=(2,))
    files = {el: ps.full[el].path for el in ("Mo", "S")}
    preset = load_preset("test", {"electron_maxstep": 3})
    with pytest.raises(ScfNotConverged) as err:
        EspressoCalculator.from_settings(qe_settings).pw_scf(
            build_monolayer("MoS2", 3.193, 1.567, 10.0), preset, qe_settings.work_dir / "x", files,
            spin_orbit=True, kmesh=(3, 3, 1))
    assert "mixing_beta" in str(err.value)  # the remedy is named
    assert err.value.exit_code == 31


def test_compute_corrects_an_unconverged_scf_and_records_it(qe_settings):
    """The same 3-iteration SCF through compute: corrected by the handler (as in workflows)."""
    r = compute_material("MoS2", load_preset("test", {"electron_maxstep": 3}), qe_settings)
    assert r.steps[0].converged is True
    assert r.steps[0].corrections[0]["handler"] == "scf_not_converged"
    assert r.steps[0].corrections[0]["changes"]["electron_maxstep"] == 100
    assert r.splitting.delta_vb_k_mev == pytest.approx(148, abs=10)


def test_missing_pw_is_reported_before_any_work(tmp_path, pseudo_dir):
    settings = load_settings(work_dir=tmp_path, pseudo_dir=pseudo_dir, pw_command="pw-does-not-exist.x")
    with pytest.raises(ExecutableNotFound, match="pw-does-not-exist.x"):
        compute_material("MoS2", load_preset("test"), settings)
    assert not any(tmp_path.iterdir())  # nothing was started


def test_scalar_relativistic_user_pseudos_are_refused_before_pw_runs(tmp_path, pseudo_dir):
    import shutil

    from tmdflow.pseudo import ensure_pseudopotentials

    ps = ensure_pseudopotentials(["Mo", "S"], "pslibrary-paw", pseudo_dir, rels=(1,))
    user = tmp_path / "upf"
    user.mkdir()
    for el in ("Mo", "S"):
        shutil.copy(ps.scalar[el].path, user / f"{el}.pbe-paw.UPF")
    settings = load_settings(work_dir=tmp_path / "runs", pseudo_dir=pseudo_dir, user_pseudo_dir=user)
    with pytest.raises(PseudopotentialError, match="fully relativistic"):
        compute_material("MoS2", load_preset("test"), settings)
    assert not (tmp_path / "runs").exists()


def test_second_variational_mode_refuses_paw_before_any_run(qe_settings):
    from tmdflow.errors import InputError

    preset = load_preset("test", {"spin_orbit_mode": "second_variational"})  # PAW family
    with pytest.raises(InputError, match="norm-conserving") as err:
        compute_material("MoS2", preset, qe_settings)
    assert "becsum" in str(err.value)
    assert not any(qe_settings.work_dir.iterdir())


def test_second_variational_mode_runs_scalar_scf_then_spin_orbit_bands(qe_settings):
    """The paper's method: SOC bands on the scalar-relativistic density (NC family, 70 Ry)."""
    preset = load_preset("second_variational", {"kmesh": 3, "vacuum": 10.0, "conv_thr": 1e-6, "extra_bands": 4})
    r = compute_material("MoS2", preset, qe_settings)
    assert [s.step for s in r.steps] == ["scf_sr", "bands_soc"]
    # measured: 152.5 meV in both modes with pslibrary-nc at 6x6x1 (docs/physics.md)
    assert r.splitting.delta_vb_k_mev == pytest.approx(148, abs=10)
    assert r.splitting.delta_cb_k_mev > 0 and r.splitting.spin_reversed_at_kprime


def test_fully_relativistic_paw_file_is_refused_for_a_scalar_step(pseudo_dir):
    from tmdflow.calculators.espresso.adapter import check_step_pseudopotentials
    from tmdflow.pseudo import ensure_pseudopotentials

    paw = ensure_pseudopotentials(["S"], "pslibrary-paw", pseudo_dir)
    with pytest.raises(PseudopotentialError, match="average only norm-conserving"):
        check_step_pseudopotentials({"S": paw.full["S"].path}, spin_orbit=False)
    nc = ensure_pseudopotentials(["S"], "pslibrary-nc", pseudo_dir)
    check_step_pseudopotentials({"S": nc.full["S"].path}, spin_orbit=False)  # NC FR: allowed
    with pytest.raises(PseudopotentialError, match="scalar-relativistic but this is a spin-orbit"):
        check_step_pseudopotentials({"S": paw.scalar["S"].path}, spin_orbit=True)
