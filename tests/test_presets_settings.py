import pytest

from tmdflow.errors import InputError
from tmdflow.presets import available_presets, load_preset
from tmdflow.settings import load_settings


def test_presets_are_layered_data():
    quick = load_preset("quick")
    assert (quick.kmesh, quick.ecutwfc, quick.ecutrho, quick.vacuum) == (6, 45.0, 360.0, 15.0)
    assert quick.pseudo_family == "pslibrary-paw"  # from base.yaml
    paper = load_preset("paper")
    assert paper.kmesh == 16 and paper.vacuum == 30.0
    assert quick.relax_ecutwfc is None and quick.relax_ecutrho is None  # relax at ecutwfc/ecutrho
    assert paper.relax_ecutwfc > paper.ecutwfc and paper.relax_ecutrho > paper.ecutrho
    assert {"quick", "paper", "test"} <= set(available_presets())


def test_user_overrides_win_and_are_validated():
    assert load_preset("quick", {"kmesh": 9}).kmesh == 9
    with pytest.raises(InputError, match="unknown preset parameter"):
        load_preset("quick", {"kmseh": 9})
    with pytest.raises(InputError, match="ecutrho"):
        load_preset("quick", {"ecutrho": 20.0})
    with pytest.raises(InputError, match="spin_orbit_mode"):
        load_preset("quick", {"spin_orbit_mode": "perturbative"})
    with pytest.raises(InputError, match="pseudo_family 'pslibrary'.*available: .*pslibrary-paw"):
        load_preset("quick", {"pseudo_family": "pslibrary"})  # caught at submit, not when a step starts
    assert load_preset("quick", {"pseudo_family": "pslibrary-1.0.0-paw"}).pseudo_family == "pslibrary-1.0.0-paw"
    with pytest.raises(InputError, match="unknown preset"):
        load_preset("fast")


def test_per_element_pseudopotential_families():
    assert load_preset("quick").element_pseudo_families == load_preset("paper").element_pseudo_families == {}
    se3d = load_preset("paper", {"element_pseudo_families": {"Se": "pslibrary-1.0.0-paw"}})
    assert se3d.pseudo_family_for("Se") == "pslibrary-1.0.0-paw"  # Se 3d in valence
    assert se3d.pseudo_family_for("W") == se3d.pseudo_family_for("S") == "pslibrary-paw"
    te = load_preset("quick", {"element_pseudo_families": {"Te": "pslibrary-1.0.0-paw"}})
    assert te.pseudo_families_for(["Mo", "Te", "Te"]) == {"Mo": "pslibrary-paw", "Te": "pslibrary-1.0.0-paw"}
    with pytest.raises(InputError, match="'nope' has no recipe file.*available: "):
        load_preset("quick", {"element_pseudo_families": {"Se": "nope"}})
    with pytest.raises(InputError, match="no recipe for 'se'"):
        load_preset("quick", {"element_pseudo_families": {"se": "pslibrary-1.0.0-paw"}})
    with pytest.raises(InputError, match="not a mapping"):
        load_preset("quick", {"element_pseudo_families": "pslibrary-1.0.0-paw"})
    # the preset data (cached YAML) is not shared with the object
    load_preset("quick").element_pseudo_families["Se"] = "changed"
    assert load_preset("quick").pseudo_family_for("Se") == "pslibrary-paw"


def test_settings_layers_file_then_env(tmp_path):
    cfg = tmp_path / "tmdflow.yaml"
    cfg.write_text("machine:\n  nprocs: 4\n  mpi_command: srun\n")
    s = load_settings(env={"TMDFLOW_NPROCS": "3"}, config_file=cfg)
    assert s.nprocs == 3 and s.mpi_command == "srun"
    s = load_settings(env={}, config_file=cfg)
    assert s.nprocs == 4


@pytest.mark.parametrize("env", [{"TMDFLOW_NPROCS": "two"}, {"TMDFLOW_NPROCS": "0"}])
def test_bad_settings_are_refused(env, tmp_path):
    with pytest.raises(InputError, match="nprocs"):
        load_settings(env=env, config_file=tmp_path / "none.yaml")


def test_cell_relaxation_cutoffs_are_floors():
    assert load_preset("quick").cell_relax_cutoffs() == (45.0, 360.0)  # no floor: the preset's cut-offs
    paper = load_preset("paper")
    assert paper.cell_relax_cutoffs() == (paper.relax_ecutwfc, paper.relax_ecutrho)
    # a convergence ladder (or a user) above the floor relaxes at its own, higher cut-offs
    assert load_preset("paper", {"ecutwfc": 75.0, "ecutrho": 600.0}).cell_relax_cutoffs() == (75.0, 600.0)


@pytest.mark.parametrize("overrides, message", [
    ({"relax_ecutwfc": 60.0}, "given together"),
    ({"relax_ecutwfc": 60.0, "relax_ecutrho": 50.0}, "relax_ecutwfc <= relax_ecutrho"),
    ({"relax_ecutwfc": -1.0, "relax_ecutrho": 50.0}, "0 < relax_ecutwfc"),
])
def test_bad_relax_cutoffs_are_refused(overrides, message):
    with pytest.raises(InputError, match=message):
        load_preset("quick", overrides)


def test_a_settings_file_with_a_password_readable_by_others_is_warned_about(tmp_path, capsys):
    """Issue 21 §3: a config file that holds a database password and is group/world-readable
    gets a warning naming the fix; a private one, or one without a password, gets none."""
    from tmdflow.settings import load_settings

    config = tmp_path / "tmdflow.yaml"
    config.write_text("machine:\n  db_uri: mongodb://tmdflow_user:SECRET@db.example.org:27017/\n")
    config.chmod(0o644)
    settings = load_settings(env={}, config_file=config)
    err = capsys.readouterr().err
    assert f"chmod 600 {config}" in err and "mode 0644" in err and "SECRET" not in err
    assert settings.db_uri.endswith("@db.example.org:27017/")  # the setting itself is used as given
    config.chmod(0o600)
    load_settings(env={}, config_file=config)
    assert capsys.readouterr().err == ""
    config.write_text("machine:\n  db_uri: mongodb://db.example.org:27017/\n")
    config.chmod(0o644)
    load_settings(env={}, config_file=config)
    assert capsys.readouterr().err == ""
