"""Checkpoints: the finished parts of a long step (an Elk E(a) scan's points) kept in the results
store, read back only for the same inputs, carried by a backup to another store, and deleted when
the step's task is stored.  The real Elk reuse is in tests/calculators/elk/test_elk_relax.py."""

from __future__ import annotations

import math
import shutil

import pytest

from tmdflow.api import backup, restore
from tmdflow.calculators.elk.inputs import ElkParameters, format_elk_in
from tmdflow.calculators.elk.relax import ScanPoint, scan_point_key
from tmdflow.settings import load_settings
from tmdflow.store.connection import connect, reset_cache
from tmdflow.store.results import CHECKPOINTS, ResultsStore, TaskCheckpoints, parts_of_step
from tmdflow.structures import build_monolayer
from tests.helpers import FIXTURES

LEGACY = FIXTURES / "legacy_store"

POINT = ScanPoint(3.0973, -131920.123456789, 1.5761, 5, "8.4.30")


def _settings(tmp_path, name):
    return load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=f"embedded:{tmp_path / name}",
                         work_dir=tmp_path / "runs")


def test_a_point_is_read_back_for_its_key_only_and_exactly(tmp_path):
    store = ResultsStore(connect(_settings(tmp_path, "a.json")).db)
    kept = TaskCheckpoints(store, "WSe2-monolayer-elk-paper-elk-relax")
    kept.put("k1", "scan0 a=3.0973 A", POINT.as_checkpoint())
    assert ScanPoint.from_checkpoint(kept.get("k1")) == POINT  # every digit of the energy
    assert kept.get("k2") is None
    # another task's checkpoints are not this one's, even for the same inputs
    assert TaskCheckpoints(store, "WSe2-monolayer-elk-quick-elk-relax").get("k1") is None
    assert store.counts()[CHECKPOINTS] == 1 and store.checkpoints()[0].label == "scan0 a=3.0973 A"


@pytest.mark.parametrize("damage", [{"energy_ev": math.nan}, {"energy_ev": "x"}, {"height_angstrom": -1.0},
                                    {"elk_version": None, "optimisation_steps": None}])
def test_a_damaged_point_is_computed_again_not_trusted(damage):
    data = {**POINT.as_checkpoint(), **damage}
    assert ScanPoint.from_checkpoint(data) is None
    assert ScanPoint.from_checkpoint({k: v for k, v in POINT.as_checkpoint().items() if k != "energy_ev"}) is None


def test_the_key_changes_with_every_input_that_decides_the_point():
    atoms = build_monolayer("WSe2", 3.282, 1.68, 15.0)
    params = ElkParameters(tasks=(2,), ngridk=(9, 9, 1), spinorb=False, rgkmax=7.0, lmaxapw=10, gmaxvr=12.0,
                           nempty=8)
    key = scan_point_key(format_elk_in(atoms, params), ["W species", "Se species"])
    assert key == scan_point_key(format_elk_in(atoms.copy(), params), ["W species", "Se species"])
    others = [
        scan_point_key(format_elk_in(build_monolayer("WSe2", 3.283, 1.68, 15.0), params), ["W species", "Se species"]),
        scan_point_key(format_elk_in(atoms, ElkParameters(**{**params.__dict__, "rgkmax": 8.0})),
                       ["W species", "Se species"]),
        scan_point_key(format_elk_in(atoms, ElkParameters(**{**params.__dict__, "ngridk": (6, 6, 1)})),
                       ["W species", "Se species"]),
        scan_point_key(format_elk_in(atoms, params), ["W species (R_mt 2.0)", "Se species"]),
    ]
    assert len({key, *others}) == 5


def test_a_backup_carries_checkpoints_to_another_store(tmp_path):
    """What lets a scan started on one machine finish on the next: the backup holds the points."""
    shutil.copy(LEGACY / "store.json", tmp_path / "first.json")  # a store with a LaunchPad, as tmdflow writes it
    (tmp_path / "first.json").chmod(0o600)
    first = _settings(tmp_path, "first.json")
    reset_cache()
    TaskCheckpoints(ResultsStore(connect(first).db), "t-relax").put("k1", "scan0", POINT.as_checkpoint())
    backup(tmp_path / "backup.json", first)
    second = _settings(tmp_path, "second.json")
    reset_cache()
    restore(tmp_path / "backup.json", second)
    reset_cache()
    assert ScanPoint.from_checkpoint(TaskCheckpoints(ResultsStore(connect(second).db), "t-relax").get("k1")) == POINT


def test_a_stored_task_deletes_its_own_checkpoints_only(tmp_path):
    store = ResultsStore(connect(_settings(tmp_path, "a.json")).db)
    for task, key in (("t-relax", "k1"), ("t-relax", "k2"), ("u-relax", "k1")):
        TaskCheckpoints(store, task).put(key, key, POINT.as_checkpoint())
    assert store.delete_checkpoints("t-relax") == 2
    assert [c.task_id for c in store.checkpoints()] == ["u-relax"]


def test_status_finds_the_parts_of_a_step_by_material_step_and_settings_hash(tmp_path):
    store = ResultsStore(connect(_settings(tmp_path, "k.json")).db)
    mine = "WSe2-monolayer-elk-paper-elk-1f4a33c4da-relax"
    for task, settings_hash, label in ((mine, "s1", "scan0"), (mine, None, "legacy"),
                                       (mine, "s2", "other settings"),
                                       ("WSe2-monolayer-elk-paper-elk-1f4a33c4da-scf_sr", "s1", "other step"),
                                       ("WSe2-bulk-elk-paper-elk-1f4a33c4da-relax", "s1", "other material"),
                                       ("WSe2-monolayer-elk-paper-x-elk-1f4a33c4da-relax", "s1", "other preset")):
        TaskCheckpoints(store, task, settings_hash=settings_hash).put(label, label, POINT.as_checkpoint())
    found = parts_of_step(store.checkpoints(), "WSe2", "monolayer", "elk-paper", "elk", "relax", "s1")
    assert [doc.label for doc in found] == ["scan0", "legacy"]  # oldest first; unrecorded hashes match
    assert [doc.label for doc in parts_of_step(store.checkpoints(), "WSe2", "monolayer", "elk-paper", "elk",
                                               "relax", None)] \
        == ["scan0", "legacy", "other settings"]
