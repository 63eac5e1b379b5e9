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


# -- the bounds declared on the Settings fields (issue 23: settings as a validated model) ----------

@pytest.mark.parametrize("variable, value, message", [
    ("TMDFLOW_DB_TIMEOUT_SECONDS", "0", "db_timeout_seconds must be a number of seconds in (0, 600], got '0'"),
    ("TMDFLOW_DB_TIMEOUT_SECONDS", "601", "db_timeout_seconds must be a number of seconds in (0, 600]"),
    ("TMDFLOW_DB_TIMEOUT_SECONDS", "inf", "db_timeout_seconds must be a number of seconds in (0, 600]"),
    ("TMDFLOW_DB_LOCK_TIMEOUT", "0", "db_lock_timeout must be a number of seconds in (0, 86400]"),
    ("TMDFLOW_DB_LOCK_TIMEOUT", "-1", "db_lock_timeout must be a number of seconds in (0, 86400]"),
    ("TMDFLOW_NPROCS", "65537", "nprocs must be an integer from 1 to 65536, got '65537'"),
    ("TMDFLOW_NPROCS", "2.5", "nprocs must be a positive integer, got '2.5'"),
    ("TMDFLOW_ELK_THREADS", "-2", "elk_threads must be a positive integer"),
])
def test_settings_bounds_are_declared_and_name_the_variable(variable, value, message):
    with pytest.raises(InputError) as err:
        load_settings(env={"TMDFLOW_CONFIG": "/dev/null", variable: value})
    assert message in str(err.value) and f"({variable})" in err.value.problem
    assert f"set {variable} to" in err.value.remedy


def test_settings_bounds_accept_their_limits():
    s = load_settings(env={"TMDFLOW_CONFIG": "/dev/null", "TMDFLOW_DB_TIMEOUT_SECONDS": "600",
                           "TMDFLOW_NPROCS": "65536", "TMDFLOW_DB_LOCK_TIMEOUT": "0.5", "TMDFLOW_ELK_THREADS": "4"})
    assert (s.db_timeout_seconds, s.nprocs, s.db_lock_timeout, s.elk_threads) == (600.0, 65536, 0.5, 4)


def test_a_bad_value_in_the_settings_file_names_the_file_and_key(tmp_path):
    cfg = tmp_path / "tmdflow.yaml"
    cfg.write_text("machine:\n  nprocs: true\n")  # YAML's true is not a number of processes
    with pytest.raises(InputError) as err:
        load_settings(env={}, config_file=cfg)
    assert f"nprocs must be a positive integer, got True (nprocs: in {cfg})" in err.value.problem
    assert f"set nprocs: in {cfg} to" in err.value.remedy
    cfg.write_text("db_timeout_seconds: 1000\n")
    with pytest.raises(InputError, match=rf"db_timeout_seconds must be .*\(db_timeout_seconds: in {cfg}\)"):
        load_settings(env={}, config_file=cfg)
    # the environment wins over the file: a good variable hides the file's bad value
    assert load_settings(env={"TMDFLOW_DB_TIMEOUT_SECONDS": "2"}, config_file=cfg).db_timeout_seconds == 2.0
    # an explicit value (a command-line option) wins over both and is named as given
    with pytest.raises(InputError, match=r"nprocs must be an integer from 1 to 65536, got 0 \(given\)"):
        load_settings(env={"TMDFLOW_NPROCS": "2"}, config_file=tmp_path / "none.yaml", nprocs=0)


def test_settings_paths_are_expanded_and_empty_means_none(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = tmp_path / "tmdflow.yaml"
    cfg.write_text("machine:\n  wienroot: ~/WIEN2k\n")
    s = load_settings(env={"TMDFLOW_WORK_DIR": "~/runs", "TMDFLOW_USER_PSEUDO_DIR": ""}, config_file=cfg)
    assert s.work_dir == tmp_path / "runs" and s.wienroot == tmp_path / "WIEN2k"
    assert s.pseudo_dir == tmp_path / ".cache/tmdflow/pseudos"  # the default, expanded too
    assert s.user_pseudo_dir is None and s.wien2k_scratch is None


def test_settings_are_frozen_and_replaced_through_validation(tmp_path):
    from pydantic import ValidationError

    s = load_settings(env={}, config_file=tmp_path / "none.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        s.nprocs = 3
    before = s.nprocs
    assert s.replace(nprocs=before + 1).nprocs == before + 1 and s.nprocs == before  # a copy
    assert s.replace(work_dir="~/x").work_dir.is_absolute()  # validated like any value: expanded
    with pytest.raises(InputError, match="db_lock_timeout must be a number of seconds in"):
        s.replace(db_lock_timeout=0)
    with pytest.raises(InputError, match="(?s)unknown setting 'nproc'.*valid settings are: .*nprocs"):
        load_settings(env={}, config_file=tmp_path / "none.yaml", nproc=2)


def test_settings_reads_this_process_environment_over_the_file(tmp_path, monkeypatch):
    """``Settings()`` itself (pydantic-settings sources): the TMDFLOW_CONFIG file < TMDFLOW_* <
    explicit values; TMDFLOW_* names that are no setting are ignored."""
    from tmdflow.settings import Settings

    cfg = tmp_path / "tmdflow.yaml"
    cfg.write_text("machine:\n  nprocs: 4\n  mpi_command: srun\n  db_name: from_file\n")
    monkeypatch.setenv("TMDFLOW_CONFIG", str(cfg))
    monkeypatch.setenv("TMDFLOW_NPROCS", "3")
    monkeypatch.setenv("TMDFLOW_NOT_A_SETTING", "x")
    s = Settings(db_name="given")
    assert (s.nprocs, s.mpi_command, s.db_name) == (3, "srun", "given")
    assert load_settings().nprocs == 3


def test_every_setting_has_a_description():
    from tmdflow.settings import Settings

    assert all(info.description for info in Settings.model_fields.values())
    assert Settings.model_config["env_prefix"] == "TMDFLOW_"


# -- the preset schema: every bound declared on a field ------------------------------------------

def test_every_numeric_preset_key_declares_its_range_and_why():
    from tmdflow.presets import PRESET_KEYS, allowed, schema, type_name

    for key in PRESET_KEYS:
        assert schema()[key].get("description"), key
        if type_name(key) in ("number", "integer"):
            assert " <= " in allowed(key) or " < " in allowed(key), key
    assert allowed("map_points") == "3 <= map_points <= 60, a multiple of 3"
    assert allowed("relax_vacuum") == "10 <= relax_vacuum <= 100 A (or null)"
    assert allowed("wien2k_ecut") == "-20 <= wien2k_ecut < 0 Ry"
    assert allowed("smearing").startswith("one of gaussian, gauss, methfessel-paxton")


def test_a_single_value_is_checked_against_its_field():
    from tmdflow.presets import check_value

    check_value("ecutwfc", 60.0)
    check_value("relax_vacuum", None)
    with pytest.raises(InputError, match="ecutwfc = 5.0 is outside the allowed range 10 <= ecutwfc <= 300 Ry") as err:
        check_value("ecutwfc", 5.0)
    assert err.value.keys == ["ecutwfc"]
    with pytest.raises(InputError, match="kmesh = 6.0 is not an integer"):
        check_value("kmesh", 6.0)
    with pytest.raises(InputError, match="map_points = 8 is outside the allowed range .*multiple of 3"):
        check_value("map_points", 8)


def test_a_rule_between_an_override_and_a_file_value_blames_the_override():
    with pytest.raises(InputError) as err:
        load_preset("quick", {"relax_ecutwfc": 60.0})
    assert "given together" in err.value.problem and "(from inputs/presets" not in err.value.problem
    assert err.value.keys == ["relax_ecutwfc", "relax_ecutrho"]


def test_an_empty_required_path_setting_is_refused_naming_it():
    with pytest.raises(InputError, match=r"work_dir must be a directory path, got '' \(TMDFLOW_WORK_DIR\)"):
        load_settings(env={"TMDFLOW_CONFIG": "/dev/null", "TMDFLOW_WORK_DIR": ""})
