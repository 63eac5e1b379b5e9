"""Issue 21, sections 4 and 5: values pw.x cannot use, bad settings and unusable directories are
refused before anything runs, with a message naming the key, the value, the allowed range and
the fix, and a documented exit code -- never a traceback.

No pw.x runs here: a stand-in pw.x (and ld1.x, bands.x) on the settings records every call to a
file, and each case asserts that the file was never written and the store never created.
"""

from __future__ import annotations

import dataclasses
import os
import stat

import pytest
from click.testing import CliRunner

from tmdflow.calculators.espresso.pwinput import PwJob, build_pw_input
from tmdflow.cli import main
from tmdflow.data import load_yaml
from tmdflow.errors import InputError
from tmdflow.presets import PRESET_KEYS, available_presets, bounds_table, load_preset
from tmdflow.settings import load_settings
from tmdflow.structures import build_monolayer
from tmdflow.workflow_spec import load_workflow
from tests.helpers import ROOT

# -- the table: one row per measured case (issue 21 section 4/5) --------------------------------
# (id, kind, argument, expected exit code, fragments the message must contain)
#   kind "compute":  extra `tmdflow compute MoS2 --preset test` arguments
#   kind "override": a preset override (workflow file overrides: for submit, load_preset for the library)
#   kind "env":      TMDFLOW_* variables for `tmdflow compute MoS2 --preset test`
CASES = [
    ("ecutwfc-nan", "compute", ["--ecutwfc", "nan"], 2, ["ecutwfc = nan", "finite", "10 <= ecutwfc <= 300 Ry"]),
    ("ecutwfc-inf", "compute", ["--ecutwfc", "inf"], 2, ["ecutwfc = inf", "finite"]),
    ("ecutwfc-1e9", "compute", ["--ecutwfc", "1e9"], 2, ["ecutwfc = 1000000000.0", "10 <= ecutwfc <= 300 Ry"]),
    ("ecutrho-below-ecutwfc", "compute", ["--ecutwfc", "100", "--ecutrho", "90"], 2, ["ecutrho", "ecutwfc"]),
    ("a-1e6", "compute", ["--a", "1e6"], 2, ["a = 1e+06", "2 <= a <= 6 A"]),
    ("d-nan", "compute", ["--d", "nan"], 2, ["d must be positive", "nan"]),
    ("vacuum-0", "compute", ["--vacuum", "0"], 2, ["vacuum must be positive"]),
    ("vacuum-5", "compute", ["--vacuum", "5"], 2, ["below 10"]),
    ("vacuum-1e4", "compute", ["--vacuum", "1e4"], 2, ["vacuum = 10000", "10 <= vacuum <= 100 A"]),
    ("kmesh-100000-cli", "compute", ["--kmesh", "100000"], 2, ["kmesh = 100000", "1 <= kmesh <= 48"]),
    ("kmesh-3.7-cli", "compute", ["--kmesh", "3.7"], 2, ["--kmesh", "3.7", "not a valid integer"]),
    ("kmesh-100000", "override", {"kmesh": 100000}, 2, ["kmesh = 100000", "1 <= kmesh <= 48", "34 GB"]),
    ("kmesh-true", "override", {"kmesh": True}, 2, ["kmesh = True", "not an integer"]),
    ("kmesh-3.7", "override", {"kmesh": 3.7}, 2, ["kmesh = 3.7", "not an integer"]),
    ("spin_texture-'no'", "override", {"spin_texture": "no"}, 2, ["spin_texture = 'no'", "true or false"]),
    ("smearing-bogus", "override", {"smearing": "bogus"}, 2, ["smearing = 'bogus'", "gaussian", "marzari-vanderbilt"]),
    ("degauss--1", "override", {"degauss": -1}, 2, ["degauss must be positive", "0 < degauss <= 0.1 Ry"]),
    ("extra_bands--50", "override", {"extra_bands": -50}, 2, ["extra_bands = -50", "1 <= extra_bands <= 100"]),
    ("electron_maxstep-0", "override", {"electron_maxstep": 0}, 2, ["electron_maxstep = 0", "1 <= electron_maxstep"]),
    ("vacuum-0-override", "override", {"vacuum": 0}, 2, ["vacuum = 0", "10 <= vacuum <= 100 A"]),
    ("mixing_mode-quote", "override", {"mixing_mode": "plain' / &system nat=99'"}, 2,
     ["mixing_mode = \"plain' / &system nat=99'\"", "plain, TF, local-TF"]),
    ("occupations-from_input", "override", {"occupations": "from_input"}, 2, ["occupations", "smearing, fixed"]),
    ("conv_thr-string", "override", {"conv_thr": "1e-8"}, 2, ["conv_thr = '1e-8'", "not a number"]),
    ("map_points-7", "override", {"map_points": 7}, 2, ["map_points = 7", "multiple of 3"]),
    ("unknown-key", "override", {"kmseh": 9}, 2, ["unknown preset parameter 'kmseh'"]),
    ("work_dir-file", "env", {"TMDFLOW_WORK_DIR": "/proc/version"}, 2,
     ["work_dir /proc/version is a file", "TMDFLOW_WORK_DIR"]),
    ("work_dir-under-file", "env", {"TMDFLOW_WORK_DIR": "/proc/version/runs"}, 2,
     ["work_dir /proc/version/runs lies under /proc/version, which is a file"]),
    ("pseudo_dir-file", "env", {"TMDFLOW_PSEUDO_DIR": "/proc/version"}, 2, ["pseudo_dir /proc/version is a file"]),
    ("user_pseudo_dir-file", "env", {"TMDFLOW_USER_PSEUDO_DIR": "/proc/version"}, 2,
     ["user_pseudo_dir /proc/version is a file"]),
    ("nprocs-abc", "env", {"TMDFLOW_NPROCS": "abc"}, 2, ["nprocs must be a positive integer", "'abc'"]),
    ("nprocs-0", "env", {"TMDFLOW_NPROCS": "0"}, 2, ["nprocs must be an integer from 1"]),
    ("keep_scratch-maybe", "env", {"TMDFLOW_KEEP_SCRATCH": "maybe"}, 2,
     ["keep_scratch must be a yes/no value, got 'maybe'", "true", "false"]),
    ("db_lock_timeout-nan", "env", {"TMDFLOW_DB_LOCK_TIMEOUT": "nan"}, 2, ["db_lock_timeout", "nan"]),
    ("config-missing", "env", {"TMDFLOW_CONFIG": "/nonexistent/tmdflow.yaml"}, 2,
     ["TMDFLOW_CONFIG=/nonexistent/tmdflow.yaml names no file"]),
]


@pytest.fixture
def sandbox(tmp_path):
    """Settings pointing at stand-in executables that record their calls, and a fresh store path."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "fake_qe"
    fake.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {calls}\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {
        "TMDFLOW_CONFIG": os.devnull,
        "TMDFLOW_PW_COMMAND": str(fake), "TMDFLOW_BANDS_COMMAND": str(fake),
        "TMDFLOW_PROJWFC_COMMAND": str(fake), "TMDFLOW_LD1_COMMAND": str(fake),
        "TMDFLOW_MPI_COMMAND": "", "TMDFLOW_NPROCS": "1",
        "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
        "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}",
    }
    return tmp_path, env, calls


def _nothing_ran(tmp_path, calls):
    assert not calls.exists(), calls.read_text()
    assert not (tmp_path / "store.json").exists()  # the store was not touched
    assert not (tmp_path / "runs").exists()


def _assert_refused(result, code, fragments):
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def _workflow(tmp_path, overrides: dict) -> tuple:
    import yaml

    lines = ["name: bad", "preset: test", "materials: [MoS2]", "overrides:"]
    lines += [f"  {yaml.safe_dump({k: v}, default_flow_style=True).strip()[1:-1]}" for k, v in overrides.items()]
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, 5  # the first override's line


@pytest.mark.parametrize("case, kind, arg, code, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_anything_runs(sandbox, case, kind, arg, code, fragments):
    tmp_path, env, calls = sandbox
    runner = CliRunner()
    if kind == "compute":
        _assert_refused(runner.invoke(main, ["compute", "MoS2", "--preset", "test", *arg], env=env), code, fragments)
    elif kind == "env":
        _assert_refused(runner.invoke(main, ["compute", "MoS2", "--preset", "test"], env={**env, **arg}),
                        code, fragments)
    else:
        # the library ...
        with pytest.raises(InputError) as err:
            load_preset("test", arg)
        for fragment in fragments:
            assert fragment in str(err.value)
        # ... the workflow loader, with the file line of the key ...
        path, line = _workflow(tmp_path, arg)
        with pytest.raises(InputError) as err:
            load_workflow(path)
        assert f"{path}:{line}: overrides.{next(iter(arg))}" in str(err.value)
        # ... and the CLI, at submit (before the store is touched) and at run
        result = runner.invoke(main, ["submit", str(path)], env=env)
        _assert_refused(result, code, [f"{path}:{line}: overrides.{next(iter(arg))}", *fragments])
        _assert_refused(runner.invoke(main, ["run", str(path)], env=env), code, fragments)
    _nothing_ran(tmp_path, calls)


def test_binary_workflow_file_is_refused_by_submit_and_run(sandbox):
    tmp_path, env, calls = sandbox
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00\x00" * 20)
    for command in ("submit", "run"):
        _assert_refused(CliRunner().invoke(main, [command, str(path)], env=env), 2,
                        [f"{path} is not a text (UTF-8) YAML file"])
    with pytest.raises(InputError, match="not a text"):
        load_workflow(path)
    _nothing_ran(tmp_path, calls)


def test_settings_file_with_unknown_keys_is_refused(sandbox):
    tmp_path, env, calls = sandbox
    cfg = tmp_path / "tmdflow.yaml"
    cfg.write_text("machine:\n  nproc: 2\n  work_dir: /tmp/x\n")
    _assert_refused(CliRunner().invoke(main, ["compute", "MoS2", "--preset", "test"], env={**env, "TMDFLOW_CONFIG": str(cfg)}),
                    2, [f"{cfg}: unknown setting(s) nproc", "valid settings are:", "nprocs"])
    cfg.write_text("machine:\n  nprocs: 2\nqueue:\n  partition: x\n")
    with pytest.raises(InputError, match=r"unknown section\(s\) \['queue'\]"):
        load_settings(env={"TMDFLOW_CONFIG": str(cfg)})
    cfg.write_text("nprocs: 2\nkeep_scratch: maybe\n")  # the file without a machine: section
    with pytest.raises(InputError, match="keep_scratch must be a yes/no value, got 'maybe'"):
        load_settings(env={"TMDFLOW_CONFIG": str(cfg)})
    assert load_settings(env={"TMDFLOW_CONFIG": os.devnull, "TMDFLOW_KEEP_SCRATCH": "no"}).keep_scratch is False
    assert load_settings(env={"TMDFLOW_CONFIG": os.devnull, "TMDFLOW_KEEP_SCRATCH": "YES"}).keep_scratch is True
    _nothing_ran(tmp_path, calls)


def test_read_only_work_dir_is_refused(sandbox):
    tmp_path, env, calls = sandbox
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    target = ro / "runs"
    if os.access(ro, os.W_OK):  # root writes into a 555 directory: use a read-only mount if there is one
        if os.access("/proc/sys", os.W_OK):
            ro.chmod(0o755)
            pytest.skip("no read-only directory on this machine (root, /proc/sys writable)")
        target = "/proc/sys/tmdflow-runs"
    try:
        for key in ("TMDFLOW_WORK_DIR", "TMDFLOW_PSEUDO_DIR"):
            result = CliRunner().invoke(main, ["compute", "MoS2", "--preset", "test"], env={**env, key: str(target)})
            _assert_refused(result, 2, [key, f"{target} cannot be created", "is not writable"])
    finally:
        ro.chmod(0o755)
    _nothing_ran(tmp_path, calls)


def test_convergence_ladders_obey_the_preset_bounds(tmp_path):
    path = tmp_path / "conv.yaml"
    path.write_text("name: conv\nkind: convergence\npreset: test\nmaterials: [MoS2]\nsteps: [scf_soc, bands_soc, analysis]\n"
                    "convergence:\n  ladders:\n    kmesh: [6, 100000]\n")
    with pytest.raises(InputError, match=rf"{path}:8: convergence.ladders: .*kmesh = 100000 .*1 <= kmesh <= 48"):
        load_workflow(path)
    path.write_text(path.read_text().replace("[6, 100000]", "[6, 9.5]"))
    with pytest.raises(InputError, match="not a whole number of k-points"):
        load_workflow(path)


def test_the_preset_schema_guards_every_way_a_preset_is_made():
    quick = load_preset("quick")
    with pytest.raises(InputError, match="kmesh = 0 is outside the allowed range 1 <= kmesh <= 48"):
        dataclasses.replace(quick, kmesh=0)
    with pytest.raises(InputError, match="mixing_beta"):
        dataclasses.replace(quick, mixing_beta=float("nan"))
    assert dataclasses.replace(quick, kmesh=9).kmesh == 9 and dataclasses.asdict(quick)["kmesh"] == 6
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.kmesh = 9  # noqa: frozen, as before
    # the SCF retry (mixing_beta halved, electron_maxstep doubled, twice) stays inside the bounds
    low = load_preset("quick", {"mixing_beta": 1e-4, "electron_maxstep": 2500})
    for _ in range(2):
        low = dataclasses.replace(low, mixing_beta=round(low.mixing_beta / 2, 4),
                                  electron_maxstep=max(low.electron_maxstep * 2, 100))
    # a relax ladder that would climb above the cut-off bounds is refused up front
    with pytest.raises(InputError, match="slab stress ladder would relax at up to 320/2560 Ry"):
        load_preset("quick", {"ecutwfc": 280.0, "ecutrho": 2240.0})


def test_a_bad_value_in_a_preset_file_names_the_file(monkeypatch):
    import tmdflow.presets as presets

    real = presets.load_yaml
    monkeypatch.setattr(presets, "load_yaml", lambda f: {**real(f), "kmesh": 0} if f == "presets/quick.yaml" else real(f))
    with pytest.raises(InputError, match=r"kmesh = 0 .*\(from inputs/presets/quick.yaml\)"):
        load_preset("quick")


def test_shipped_presets_resolve_to_their_yaml_values_unchanged():
    for name in available_presets():
        raw = {**load_yaml("presets/base.yaml"), **load_yaml(f"presets/{name}.yaml")}
        resolved = dataclasses.asdict(load_preset(name))
        assert set(resolved) == set(PRESET_KEYS)
        for key, value in raw.items():
            assert resolved[key] == value and type(resolved[key]) in (type(value), float), (name, key)
    paper = load_preset("paper")
    assert (paper.kmesh, paper.ecutwfc, paper.ecutrho, paper.vacuum, paper.relax_vacuum, paper.conv_thr) == \
        (16, 45.0, 360.0, 30.0, 15.0, 1e-9)
    assert {row[0] for row in bounds_table()} == set(PRESET_KEYS)


def test_no_string_reaches_a_pw_input_unchecked():
    atoms = build_monolayer("MoS2", 3.19, 1.56, 15.0)
    preset = load_preset("quick")
    with pytest.raises(InputError, match="pseudo_dir = \"/tmp/it's\" contains \"'\""):
        build_pw_input(PwJob("scf", atoms, preset, {"Mo": "Mo.upf", "S": "S.upf"}, "/tmp/it's", spin_orbit=True))
    with pytest.raises(InputError, match="contains '\\\\n'"):
        build_pw_input(PwJob("scf", atoms, preset, {"Mo": "Mo.upf", "S": "S.upf"}, "./pseudo", spin_orbit=True,
                             prefix="tmd\n&system"))
    with pytest.raises(InputError, match="contains spaces"):
        build_pw_input(PwJob("scf", atoms, preset, {"Mo": "Mo 1.upf", "S": "S.upf"}, "./pseudo", spin_orbit=True))
    text = build_pw_input(PwJob("scf", atoms, preset, {"Mo": "Mo.upf", "S": "S.upf"}, "./pseudo", spin_orbit=True))
    assert "mixing_mode = 'plain'" in text and "smearing = 'gaussian'" in text


def test_the_user_guide_lists_every_bound_as_declared():

    from tmdflow.structures import GEOMETRY_BOUNDS

    guide = (ROOT / "docs" / "user-guide.md").read_text()
    for key, typ, allowed, _ in bounds_table():
        if key != "name":
            assert f"| `{key}` | {typ} | {allowed.replace(' <= ', ' ≤ ')} |" in guide, key
    for key, (lo, hi, _) in GEOMETRY_BOUNDS.items():
        assert f"| `{key}` | {lo:g} ≤ {key} ≤ {hi:g} |" in guide, key


def test_pseudo_build_refuses_a_pseudo_dir_that_is_a_file(sandbox):
    tmp_path, env, calls = sandbox
    result = CliRunner().invoke(main, ["pseudo", "build", "Mo"], env={**env, "TMDFLOW_PSEUDO_DIR": "/proc/version"})
    _assert_refused(result, 2, ["pseudo_dir /proc/version is a file", "TMDFLOW_PSEUDO_DIR"])
    _nothing_ran(tmp_path, calls)
