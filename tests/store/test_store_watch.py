"""Watching the embedded store while a launcher holds it (issue 22 §4): readers read the last
atomic checkpoint and say how old it is, never write; writers still wait and fail with 62;
FireWorks' own tools go through ``tmdflow lpad`` (direct use on the file is refused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bson.json_util
import pytest
from tests.helpers import QE_WORKFLOW_TEMPLATE, ROOT

ROOT = ROOT


def _env(store: Path, tmp_path: Path, **extra) -> dict:
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{store}", "TMDFLOW_CONFIG": os.devnull,
           "TMDFLOW_WORK_DIR": str(tmp_path / "runs"), "PYTHONPATH": str(ROOT), **extra}
    env.pop("MONGOMOCK_SERVERSTORE_FILE", None)
    return env


def _tmdflow(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


HOLDER = textwrap.dedent("""
    import sys, time
    from tmdflow.settings import load_settings
    from tmdflow.store.connection import connect
    from tmdflow.store.results import ResultsStore
    from tests.helpers import material_doc
    conn = connect(load_settings())              # a writer: holds the lock, like a launcher
    store = ResultsStore(conn.db)
    store.upsert_material(material_doc("MoS2", dvb=149.1))
    conn.checkpoint()                            # what a launcher does after each step
    store.upsert_material(material_doc("WSe2", dvb=465.0))   # not checkpointed yet
    print("ready", flush=True)
    sys.stdin.readline()                         # hold the store until told to finish
""")


@pytest.fixture
def held_store(tmp_path):
    store = tmp_path / "store.json"
    env = _env(store, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        yield store, env, holder
    finally:
        if holder.poll() is None:
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(timeout=60)


def test_readers_work_while_a_launcher_holds_the_store(held_store):
    store, env, holder = held_store
    time.sleep(1.1)
    before = (store.read_bytes(), store.stat().st_mtime_ns)
    q = _tmdflow(["query", "--json"], env)
    assert q.returncode == 0, q.stderr
    assert [r["formula"] for r in json.loads(q.stdout)] == ["MoS2"]  # the checkpoint, not the unsaved WSe2
    assert f"a launcher (pid {holder.pid} since" in q.stderr and "reading the store as checkpointed" in q.stderr
    age = int(q.stderr.split("checkpointed ")[1].split(" s ago")[0])
    assert 1 <= age < 60
    for args in (["status"], ["table1"], ["db", "info"], ["report", "-o", str(store.parent / "r.md"), "--format",
                                                              "markdown"]):
        out = _tmdflow(args, env)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (args, out.stderr)
        assert "holds it" in out.stderr
    assert "| MoS2 |" in _tmdflow(["table1"], env).stdout
    assert (store.read_bytes(), store.stat().st_mtime_ns) == before  # readers never write
    assert not list(store.parent.glob(".store.json.*"))


def test_writers_still_wait_for_the_lock_then_fail_with_62(held_store):
    store, env, holder = held_store
    for args in (["db", "init"], ["lpad", "get_wflows"]):
        out = _tmdflow(args, {**env, "TMDFLOW_DB_LOCK_TIMEOUT": "0.5"})
        assert out.returncode == 62, out.stderr
        assert f"in use by pid {holder.pid}" in out.stderr and "status, query, table1 and report work" in out.stderr


def test_the_holders_work_is_there_after_it_finishes(held_store):
    store, env, holder = held_store
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=60)
    rows = json.loads(_tmdflow(["query", "--json"], env).stdout)
    assert sorted(r["formula"] for r in rows) == ["MoS2", "WSe2"]  # the exit-time atomic save


def test_a_reader_of_a_missing_store_creates_nothing(tmp_path):
    store = tmp_path / "nosuch" / "store.json"
    out = _tmdflow(["status"], _env(store, tmp_path))
    assert out.returncode == 0 and "no store at" in out.stderr
    assert not store.parent.exists()


def test_tmdflow_lpad_runs_fireworks_lpad_on_the_store_and_checkpoints(tmp_path):
    store = tmp_path / "store.json"
    env = _env(store, tmp_path)
    (tmp_path / "wf.yaml").write_text(QE_WORKFLOW_TEMPLATE.format(name="lp"))
    assert _tmdflow(["submit", str(tmp_path / "wf.yaml")], env).returncode == 0
    out = _tmdflow(["lpad", "get_fws", "-d", "count"], env)
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr
    fw_id = min(int(d["fw_id"]) for _, d in bson.json_util.loads(store.read_text())["tmdflow"]["fireworks"]["documents"])
    assert _tmdflow(["lpad", "pause_fws", "-i", str(fw_id)], env).returncode == 0
    states = {d["fw_id"]: d["state"] for _, d in bson.json_util.loads(store.read_text())["tmdflow"]["fireworks"]["documents"]}
    assert states[fw_id] == "PAUSED"  # written back atomically under tmdflow's lock
    refused = _tmdflow(["lpad", "reset"], env)
    assert refused.returncode == 2 and "db init" in refused.stderr


def test_fireworks_own_tools_pointed_at_the_file_are_refused_and_write_nothing(tmp_path):
    """FireWorks' mongomock-persistence mode would load the file and rewrite it, unlocked and
    in place, at exit: the file's __tmdflow_store__ entry makes its load fail first."""
    store = tmp_path / "store.json"
    env = _env(store, tmp_path)
    assert _tmdflow(["db", "init"], env).returncode == 0
    before = store.read_bytes()
    direct = subprocess.run([str(Path(sys.executable).parent / "lpad"), "get_wflows"], capture_output=True, text=True,
                            env={**env, "MONGOMOCK_SERVERSTORE_FILE": str(store)}, cwd=tmp_path, timeout=120)
    assert direct.returncode != 0
    assert store.read_bytes() == before


def test_a_store_written_by_earlier_tmdflow_still_opens(tmp_path):
    """No __tmdflow_store__ entry, timestamps as ISO strings: read as before, marked on the next save."""
    store = tmp_path / "store.json"
    task = {"task_id": "MoS2-monolayer-test-scf_soc", "formula": "MoS2", "dimensionality": "monolayer",
            "preset": "test", "step": "scf_soc", "calculator": "espresso",
            "created_at": "2025-01-02T03:04:05.123456+00:00", "updated_at": "2025-01-02T03:04:05.123456+00:00"}
    store.write_text(json.dumps({"tmdflow": {
        "fw_id_assigner": {"name": "fw_id_assigner", "documents": [["a", {"next_fw_id": 1, "next_launch_id": 1}]]},
        "tasks": {"name": "tasks", "documents": [["b", task]]}}}))
    from tmdflow.settings import load_settings
    from tmdflow.store.connection import connect, reset_cache
    from tmdflow.store.results import ResultsStore

    reset_cache()
    conn = connect(load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=f"embedded:{store}"))
    assert ResultsStore(conn.db).task("MoS2-monolayer-test-scf_soc").created_at.year == 2025
    conn.checkpoint()
    data = json.loads(store.read_text())
    assert "__tmdflow_store__" in data and data["tmdflow"]["tasks"]["documents"]
    conn.embedded.close()
    reset_cache()
