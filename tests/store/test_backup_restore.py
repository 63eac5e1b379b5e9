"""``db backup`` / ``db restore`` never destroy a store (issue 21 §2).  Measured before: restoring a
file holding ``[]`` dropped every collection and then failed (54 kB -> 795 bytes); ``{}`` did the
same with exit code 0; ``{"tmdflow": 5}`` gave a traceback.  The store here is a real one
(tests/fixtures/legacy_store, written by the code before result identities)."""

from __future__ import annotations

import json
import shutil
import stat

import bson.json_util
import pytest
from tests.helpers import FIXTURES, cli_env, run_tmdflow


LEGACY = FIXTURES / "legacy_store"


@pytest.fixture
def store(tmp_path):
    shutil.copy(LEGACY / "store.json", tmp_path / "store.json")
    (tmp_path / "store.json").chmod(0o600)
    return {"env": cli_env(tmp_path), "file": tmp_path / "store.json", "dir": tmp_path}


def _backup_dict(store) -> dict:
    path = store["dir"] / "good.json"
    run_tmdflow(store["env"], "db", "backup", str(path))
    return bson.json_util.loads(path.read_text())


def _bad_backups(good: dict) -> dict[str, object]:
    wrong_schema = json.loads(bson.json_util.dumps(good))
    wrong_schema["materials"][0]["splitting"] = "149 meV"
    low_counter = json.loads(bson.json_util.dumps(good))
    low_counter["fw_id_assigner"][0]["next_fw_id"] = 2
    lost_node = json.loads(bson.json_util.dumps(good))
    lost_node["fireworks"] = lost_node["fireworks"][1:]
    twice = json.loads(bson.json_util.dumps(good))
    twice["tasks"].append(dict(twice["tasks"][0]))
    return {
        "empty list": ([], "a JSON object of collections, this is a list"),
        "empty object": ({}, "FireWorks' collection(s) ['fireworks', 'workflows', 'launches', 'fw_id_assigner'] missing"),
        "not collections": ({"tmdflow": 5}, "collection 'tmdflow' is not a list of documents"),
        "a document off its schema": (wrong_schema, "materials[0] (MoS2-bulk-test-wien2k): splitting"),
        "id counter below the ids": (low_counter, "next_fw_id=2 is not above the largest fw_id 4"),
        "a workflow naming lost Fireworks": (lost_node, "names Fireworks [1] that the backup does not hold"),
        "a task id twice": (twice, "appears twice"),
    }


@pytest.mark.parametrize("case", ["empty list", "empty object", "not collections", "a document off its schema",
                                  "id counter below the ids", "a workflow naming lost Fireworks", "a task id twice"])
def test_a_bad_backup_changes_nothing(store, case):
    value, message = _bad_backups(_backup_dict(store))[case]
    before = store["file"].read_bytes()
    bad = store["dir"] / "bad.json"
    bad.write_text(bson.json_util.dumps(value))
    proc = run_tmdflow(store["env"], "db", "restore", str(bad), ok=False)
    assert proc.returncode == 63, proc.stderr
    assert message in proc.stderr and "nothing was changed" in proc.stderr and "Traceback" not in proc.stderr
    assert store["file"].read_bytes() == before  # untouched, byte for byte
    assert not list(store["dir"].glob("pre-restore-*"))


def test_a_binary_or_non_json_file_is_refused(store):
    before = store["file"].read_bytes()
    for name, content in (("bin.json", b"\x89PNG\r\n\x1a\n\x00\xff"), ("text.json", b"not json at all")):
        (store["dir"] / name).write_bytes(content)
        proc = run_tmdflow(store["env"], "db", "restore", str(store["dir"] / name), ok=False)
        assert proc.returncode == 63 and "is not a tmdflow backup" in proc.stderr and "Traceback" not in proc.stderr
    assert store["file"].read_bytes() == before


def test_a_good_restore_keeps_what_it_replaced(store):
    good = store["dir"] / "good.json"
    run_tmdflow(store["env"], "db", "backup", str(good))
    assert stat.S_IMODE(good.stat().st_mode) == 0o600  # a backup holds everything the store holds
    # change the store (a new workflow), then restore the backup taken before it
    (store["dir"] / "wf.yaml").write_text((LEGACY / "workflow.yaml").read_text().replace("legacy", "later"))
    run_tmdflow(store["env"], "submit", str(store["dir"] / "wf.yaml"))
    changed = bson.json_util.loads(store["file"].read_text())["tmdflow"]
    out = run_tmdflow(store["env"], "db", "restore", str(good)).stdout
    (previous,) = store["dir"].glob("pre-restore-*.json")
    assert str(previous) in out and stat.S_IMODE(previous.stat().st_mode) == 0o600
    kept = bson.json_util.loads(previous.read_text())
    assert len(kept["workflows"]) == len(changed["workflows"]["documents"]) == 2  # the replaced content, whole
    status = run_tmdflow(store["env"], "status").stdout
    assert "legacy:MoS2-bulk-test-wien2k" in status and "later:" not in status
    # the restored store works for writing commands (id counter, indexes)
    assert "added" in run_tmdflow(store["env"], "submit", str(store["dir"] / "wf.yaml")).stdout


def _pinned_backup(store) -> dict:
    """A backup of the legacy store after one submission: it holds that submission's pinned preset."""
    (store["dir"] / "wf.yaml").write_text((LEGACY / "workflow.yaml").read_text().replace("legacy", "later"))
    run_tmdflow(store["env"], "submit", str(store["dir"] / "wf.yaml"))
    good = _backup_dict(store)
    assert len(good["pinned_presets"]) == 1
    return good


@pytest.mark.parametrize("case", ["altered", "missing"])
def test_a_backup_whose_pinned_preset_would_not_load_changes_nothing(store, case):
    good = _pinned_backup(store)
    bad = json.loads(bson.json_util.dumps(good))
    digest = bad["pinned_presets"][0]["_id"]
    if case == "altered":
        bad["pinned_presets"][0]["values"]["kmesh"] += 1  # its content no longer hashes to its key
        message = f"pinned_presets[0] ({digest[:12]}): holds values whose hash is"
    else:
        bad["pinned_presets"] = []
        message = f"the preset {digest[:12]} pinned by"
    before = store["file"].read_bytes()
    (store["dir"] / "bad.json").write_text(bson.json_util.dumps(bad))
    proc = run_tmdflow(store["env"], "db", "restore", str(store["dir"] / "bad.json"), ok=False)
    assert proc.returncode == 63 and message in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert store["file"].read_bytes() == before


def test_a_backup_with_its_pinned_presets_restores(store):
    good = _pinned_backup(store)
    (store["dir"] / "good2.json").write_text(bson.json_util.dumps(good))
    run_tmdflow(store["env"], "db", "restore", str(store["dir"] / "good2.json"))
    restored = bson.json_util.loads(store["file"].read_text())["tmdflow"]
    assert [d for _, d in restored["pinned_presets"]["documents"]] == good["pinned_presets"]  # _id and values
