"""Store faults through the real CLI: every one a named error with its exit code, problem and fix,
never a traceback; nothing stored is lost, and no password is printed (issue 21 §3, §5)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers import ROOT

ROOT = ROOT
TMDFLOW = [sys.executable, "-m", "tmdflow.cli"]


def _run(args, uri, tmp_path, **env):
    full = {**os.environ, "TMDFLOW_DB_URI": uri, "TMDFLOW_CONFIG": os.devnull, "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
            "PYTHONPATH": str(ROOT), **env}
    full.pop("MONGOMOCK_SERVERSTORE_FILE", None)
    start = time.monotonic()
    proc = subprocess.run(TMDFLOW + args, env=full, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    return proc, time.monotonic() - start


def _prepare(tmp_path: Path, kind: str) -> str:
    if kind == "empty":
        (tmp_path / "store.json").write_bytes(b"")
    elif kind == "list":
        (tmp_path / "store.json").write_text("[]")
    elif kind == "int-db":
        (tmp_path / "store.json").write_text('{"tmdflow": 5}')
    elif kind == "binary":
        (tmp_path / "store.json").write_bytes(bytes(range(256)) * 4)
    elif kind == "truncated":
        (tmp_path / "store.json").write_text('{"tmdflow": {"materials": ')
    elif kind == "bad-collection":
        (tmp_path / "store.json").write_text('{"tmdflow": {"tasks": {"name": "tasks", "documents": [1, 2]}}}')
    elif kind == "file-parent":
        (tmp_path / "afile").write_text("x")
    elif kind == "dir":
        (tmp_path / "adir").mkdir()
    return kind


# (id, command, uri (TMP = tmp_path), setup, exit code, fragments of the message)
CASES = [
    ("empty-path", ["status"], "embedded:", None, 60, ["names no file", "TMDFLOW_DB_URI=embedded:"]),
    ("blank-path", ["db", "init"], "embedded:   ", None, 60, ["names no file"]),
    ("directory", ["status"], "embedded:TMP/adir", "dir", 60, ["is a directory", "adir/store.json"]),
    ("parent-is-file", ["db", "init"], "embedded:TMP/afile/store.json", "file-parent", 60,
     ["is a file, not a directory"]),
    ("under-proc", ["db", "init"], "embedded:/proc/tmdflow-nosuch/store.json", None, 60,
     ["cannot create the directory of the embedded store", "directory you can write"]),
    ("empty-file", ["status"], "embedded:TMP/store.json", "empty", 61, ["damaged", "empty", "db restore"]),
    ("list-file", ["query"], "embedded:TMP/store.json", "list", 61, ["damaged", "top level is of type list"]),
    ("int-database", ["db", "info"], "embedded:TMP/store.json", "int-db", 61, ["damaged", "database 'tmdflow'"]),
    ("binary-file", ["table1"], "embedded:TMP/store.json", "binary", 61, ["damaged", "not a text file"]),
    ("truncated-file", ["db", "init"], "embedded:TMP/store.json", "truncated", 61, ["damaged", "left untouched"]),
    ("bad-collection", ["status"], "embedded:TMP/store.json", "bad-collection", 61, ["'tmdflow.tasks'"]),
    ("at-in-password", ["status"], "mongodb://alice:p@ss-SECRET@db.example.invalid/", None, 60,
     ["percent-encode", "%40", "alice:***@db.example.invalid"]),
    ("port-99999", ["query"], "mongodb://alice:SECRET@db.example.invalid:99999/", None, 60,
     ["between 1 and 65535"]),
    ("empty-user", ["status"], "mongodb://:SECRET@db.example.invalid/", None, 60, ["user name before the ':'"]),
    ("unknown-srv", ["status"], "mongodb+srv://alice:SECRET@nosuch.invalid/", None, 60,
     ["nosuch.invalid", "SRV"]),
    ("not-a-uri", ["status"], "postgres://alice:SECRET@h/", None, 2, ["neither mongodb://", "alice:***@h"]),
]


@pytest.mark.parametrize("name,args,uri,setup,code,fragments", CASES, ids=[c[0] for c in CASES])
def test_store_faults_are_named_errors(tmp_path, name, args, uri, setup, code, fragments):
    _prepare(tmp_path, setup) if setup else None
    store = tmp_path / "store.json"
    before = store.read_bytes() if store.exists() else None
    proc, _ = _run(args, uri.replace("TMP", str(tmp_path)), tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out
    assert out.startswith("error: ") and "\n  -> " in out, out  # problem, then the fix
    for fragment in fragments:
        assert fragment in out, out
    assert "SECRET" not in out
    if before is not None:
        assert store.read_bytes() == before  # a damaged file is left untouched


def test_an_unreachable_mongodb_fails_within_the_timeout(tmp_path):
    """Nothing listens on port 1: exit 60 after the 5 s server-selection timeout (was 11-15 s
    and a traceback), naming the host without the password; db_timeout_seconds changes it."""
    uri = "mongodb://alice:SECRET@127.0.0.1:1/?authSource=admin"
    _, startup = _run(["status", "--help"], uri, tmp_path)  # the interpreter's own start-up on this machine
    proc, elapsed = _run(["status"], uri, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 60, out
    assert "no MongoDB server answered at 127.0.0.1:1 within 5.0 s" in out and "start the server" in out
    assert "Traceback" not in out and "SECRET" not in out
    assert 5 <= elapsed < startup + 5 + 4
    proc, elapsed = _run(["query"], uri, tmp_path, TMDFLOW_DB_TIMEOUT_SECONDS="1")
    assert proc.returncode == 60 and "within 1.0 s" in proc.stderr
    assert elapsed < startup + 1 + 4
    proc, _ = _run(["status"], uri, tmp_path, TMDFLOW_DB_TIMEOUT_SECONDS="soon")
    assert proc.returncode == 2 and "db_timeout_seconds must be a number" in proc.stderr


def _tmpfs(fs_dir: Path, options: str):
    """A fixture's body: a tmpfs mounted with ``options`` at ``fs_dir`` for the test (skipped
    without root or where mounting fails), unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a test filesystem needs root")
    fs_dir.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(fs_dir)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield fs_dir
    subprocess.run(["umount", str(fs_dir)], check=True)


@pytest.fixture
def tiny_fs(tmp_path):
    yield from _tmpfs(tmp_path / "tiny", "size=256k")


@pytest.fixture
def readonly_fs(tmp_path):
    yield from _tmpfs(tmp_path / "ro", "ro,size=64k")


def test_a_full_disk_keeps_the_last_checkpoint_and_says_what_to_do(tmp_path, tiny_fs):
    uri = f"embedded:{tiny_fs / 'store.json'}"
    proc, _ = _run(["db", "init"], uri, tmp_path)
    assert proc.returncode == 0, proc.stderr
    before = (tiny_fs / "store.json").read_bytes()
    fd = os.open(tiny_fs / "filler", os.O_WRONLY | os.O_CREAT)  # fill the filesystem
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    proc, _ = _run(["db", "init"], uri, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 60, out
    assert "No space left on device (ENOSPC" in out and "previous checkpoint" in out and "is intact" in out
    assert f"df -h {tiny_fs}" in out and "Traceback" not in out
    assert out.count("error: ") == 1  # said once, not again by the exit-time save
    assert (tiny_fs / "store.json").read_bytes() == before
    assert [p.name for p in tiny_fs.iterdir() if p.name.startswith(".store.json.")] == []  # no temp file left


def test_a_read_only_directory_is_a_named_error(tmp_path, readonly_fs):
    proc, _ = _run(["db", "init"], f"embedded:{readonly_fs / 'store.json'}", tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 60, out
    assert "Read-only file system (EROFS)" in out and "directory you can write" in out
    assert "Traceback" not in out


def test_enospc_while_saving_leaves_the_old_file_intact(tmp_path, monkeypatch):
    """The same without root: os.write fails with ENOSPC in the middle of the atomic save."""
    from tmdflow.errors import StoreWriteFailed
    from tmdflow.settings import load_settings
    from tmdflow.store.connection import connect, reset_cache
    from tmdflow.store.results import ResultsStore
    from tests.helpers import material_doc

    reset_cache()
    conn = connect(load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=f"embedded:{tmp_path / 's.json'}"))
    before = (tmp_path / "s.json").read_bytes()
    ResultsStore(conn.db).upsert_material(material_doc())
    real_write = os.write

    def full(fd, data):
        if fd > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreWriteFailed, match="ENOSPC") as err:
        conn.checkpoint()
    assert "is intact" in str(err.value) and "free space" in str(err.value)
    monkeypatch.setattr(os, "write", real_write)
    assert (tmp_path / "s.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.json.")]
    conn.checkpoint()  # space again: the material is saved
    assert b"MoS2-monolayer-quick" in (tmp_path / "s.json").read_bytes()
    conn.embedded.close()
    reset_cache()
