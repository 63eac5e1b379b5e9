"""tmdflow's embedded database: FireWorks' mongomock-persistence mode made safe.

mongomock-persistence loads a JSON file when a client is created and writes it back (in place)
when the interpreter exits.  Its sharp edges, and what this module does about each:

* saved only on clean exit          -> :meth:`EmbeddedDatabase.save` after every completed step
* non-atomic writes                  -> temp file + fsync + rename; tmdflow loads the file itself
                                        (the library's own load/exit-write is never armed)
* every client has its own copy      -> exactly one client per process and file, shared by the
                                        LaunchPad and tmdflow's collections
* unsafe with two processes          -> an exclusive lock (fcntl) held for the process lifetime;
                                        a second writer waits ``timeout`` s, then fails clearly;
                                        readers (status, query, ...) read the last checkpoint
                                        without the lock (:meth:`EmbeddedDatabase.snapshot`)
* FireWorks' own tools on the file   -> the file carries a ``__tmdflow_store__`` entry that
                                        mongomock-persistence cannot load, so a direct ``lpad`` /
                                        ``rlaunch`` with MONGOMOCK_SERVERSTORE_FILE fails before
                                        it could overwrite the file; ``tmdflow lpad`` is the way
* no persisted indexes               -> :func:`tmdflow.store.results.ensure_indexes` on every open
* an empty/truncated/alien file      -> StoreCorrupted naming the file and the backup to restore
* disk full / read-only while saving -> StoreWriteFailed; the previous checkpoint is intact

File format (mongomock-persistence's, unchanged): bson.json_util JSON
``{db: {collection: {"name": str, "documents": [[key, document], ...]}}}``.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..errors import StoreBusy, StoreConfigError, StoreCorrupted, StoreWriteFailed

#: top-level entry of every file tmdflow writes; not a database (see the module docstring)
MARKER = "__tmdflow_store__"
MARKER_VALUE = {
    "written_by": "tmdflow",
    "note": "tmdflow's embedded store: open it with tmdflow (FireWorks' lpad: 'tmdflow lpad ...'); "
            "FireWorks tools pointed at this file directly are refused because they bypass its lock",
}

_OPEN: dict[Path, "EmbeddedDatabase"] = {}
_SNAPSHOTS: dict[Path, tuple[int | None, "Snapshot"]] = {}


def check_path(path: Path, uri_text: str) -> Path:
    """The resolved store file, or a StoreConfigError saying why ``path`` cannot be one."""
    if not uri_text.partition(":")[2].strip():
        raise StoreConfigError(f"db_uri '{uri_text}' names no file",
                               "give the store's file, e.g. TMDFLOW_DB_URI=embedded:~/.local/share/tmdflow/store.json")
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        raise StoreConfigError(f"the embedded store {path} is a directory, not a file",
                               f"name a file in it, e.g. TMDFLOW_DB_URI=embedded:{path / 'store.json'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreConfigError(f"the embedded store {path} cannot be created: {parent} is a file, "
                                       f"not a directory", "choose a path whose parents are directories")
            break
    return path


def _os_error(exc: OSError, path: Path, doing: str) -> StoreConfigError:
    return StoreConfigError(
        f"cannot {doing} the embedded store {path}: {exc.strerror or exc} ({errno.errorcode.get(exc.errno, '?')})",
        f"choose a store file in a directory you can write (TMDFLOW_DB_URI=embedded:<file>), "
        f"or fix the permissions/mount of {path.parent}",
    )


def load_file(path: Path) -> dict:
    """The store file's databases (marker removed), checked to be of mongomock-persistence's
    shape; StoreCorrupted otherwise (the file is never modified here)."""
    import bson.json_util

    def damaged(why: str) -> StoreCorrupted:
        return StoreCorrupted(
            f"the embedded store {path} is damaged ({why})",
            "restore a backup: tmdflow db restore BACKUP.json (backups are made by 'tmdflow db backup'); "
            "the damaged file was left untouched",
        )

    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise StoreConfigError(f"the embedded store {path} is a directory, not a file",
                               f"name a file in it, e.g. TMDFLOW_DB_URI=embedded:{path / 'store.json'}") from None
    except OSError as exc:
        raise _os_error(exc, path, "read") from None
    if not raw.strip():
        raise damaged("the file is empty: a store tmdflow wrote is never empty")
    try:
        data = bson.json_util.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise damaged("not a text file") from None
    except ValueError as exc:
        raise damaged(f"{exc.__class__.__name__}: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise damaged(f"top level is of type {type(data).__name__}, not an object of databases")
    data.pop(MARKER, None)
    for db, colls in data.items():
        if not isinstance(colls, dict):
            raise damaged(f"database '{db}' is of type {type(colls).__name__}, not an object of collections")
        for name, coll in colls.items():
            docs = coll.get("documents") if isinstance(coll, dict) else None
            if not isinstance(coll, dict) or not isinstance(coll.get("name"), str) or not isinstance(docs, list):
                raise damaged(f"collection '{db}.{name}' is not of the form {{name, documents}}")
            if not all(isinstance(d, (list, tuple)) and len(d) == 2 and isinstance(d[1], dict) for d in docs):
                raise damaged(f"collection '{db}.{name}' holds entries that are not [key, document] pairs")
    return data


def _client_from(data: dict):
    """A mongomock client holding ``data`` (mongomock-persistence's store classes, never its
    file load or exit write)."""
    saved = os.environ.pop("MONGOMOCK_SERVERSTORE_FILE", None)
    try:
        import mongomock_persistence  # noqa: F401  (patches mongomock's store classes)
        from mongomock import MongoClient
        from mongomock.store import DatabaseStore

        client = MongoClient()
    finally:
        if saved is not None:
            os.environ["MONGOMOCK_SERVERSTORE_FILE"] = saved
    client._store._databases = {k: DatabaseStore.from_dict(v) for k, v in data.items()}
    return client


def lock_holder(path: Path) -> str | None:
    """'pid N since ...' when another process holds the store's lock, else None."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fh = open(lock_path, "r")
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip() or "another process"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


class Snapshot:
    """The store as last checkpointed, read without the lock (never written back)."""

    readonly = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.exists = path.exists()
        self.mtime = path.stat().st_mtime if self.exists else None
        self.holder = lock_holder(path) if self.exists else None
        self.client = _client_from(load_file(path) if self.exists else {})

    def age_seconds(self) -> float | None:
        return None if self.mtime is None else max(0.0, time.time() - self.mtime)

    def save(self) -> None:  # a reader never writes
        return None


# mongomock is not thread-safe: FireWorks' ping thread and the rocket's complete_launch
# (store/launchpad.py) and the checkpoint's serialisation hold this lock
LAUNCH_WRITES = threading.RLock()


class EmbeddedDatabase:
    readonly = False

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, self.path, "create the directory of") from None
        self._lock_fh = self._acquire_lock(timeout)
        try:
            if not self.path.exists():
                self._atomic_write(self._dumps({}))
            self.client = _client_from(load_file(self.path))
        except BaseException:
            self._release()
            raise
        atexit.register(self.close)

    # -- public -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, timeout: float = 30.0) -> "EmbeddedDatabase":
        key = Path(path).expanduser().resolve()
        if key not in _OPEN:
            _OPEN[key] = cls(key, timeout)
        return _OPEN[key]

    @classmethod
    def snapshot(cls, path: Path):
        """For readers: this process's open store if it holds it, else the last checkpoint."""
        key = Path(path).expanduser().resolve()
        if key in _OPEN:
            return _OPEN[key]
        mtime = key.stat().st_mtime_ns if key.exists() else None
        cached = _SNAPSHOTS.get(key)
        if cached is None or cached[0] != mtime:  # re-read only when a writer checkpointed since
            _SNAPSHOTS[key] = (mtime, Snapshot(key))
        return _SNAPSHOTS[key][1]

    def save(self) -> None:
        """Write the whole store atomically (temp file in the same directory, fsync, rename)."""
        if self._lock_fh is None:
            return
        try:
            with LAUNCH_WRITES:  # a FireWorks ping thread may be writing a launch
                text = self._dumps(self.client._store.to_dict())
            self._atomic_write(text)
        except StoreWriteFailed:
            self._save_failed = True  # reported by the caller; close() will not repeat it
            raise
        self._save_failed = False

    def close(self) -> None:
        if self._lock_fh is None:
            return
        reported = getattr(self, "_save_failed", False)
        try:
            self.save()
        except StoreWriteFailed as exc:  # at exit: say it (once), no traceback
            if not reported:
                print(f"error: {exc}", file=sys.stderr)
        finally:
            self._release()

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _dumps(databases: dict) -> str:
        import bson.json_util

        return bson.json_util.dumps({MARKER: MARKER_VALUE, **databases})

    def _release(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None
        _OPEN.pop(self.path, None)

    def _acquire_lock(self, timeout: float):
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fh = open(lock_path, "a+")
        except OSError as exc:
            raise _os_error(exc, self.path, "lock") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    fh.close()
                    raise StoreBusy(
                        f"the embedded store {self.path} is in use by {holder} (waited {timeout:.0f} s)",
                        "wait for that tmdflow process to finish, raise TMDFLOW_DB_LOCK_TIMEOUT, or use a "
                        "MongoDB server (TMDFLOW_DB_URI=mongodb://...) for concurrent launchers; "
                        "status, query, table1 and report work meanwhile",
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        return fh

    def _atomic_write(self, text: str) -> None:
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                view = memoryview(text.encode("utf-8"))
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            kept = (f"the previous checkpoint {self.path} is intact (written "
                    f"{time.strftime('%H:%M:%S', time.localtime(self.path.stat().st_mtime))})"
                    if self.path.exists() else "nothing was written")
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise StoreWriteFailed(
                f"could not save the embedded store {self.path}: {exc.strerror or exc} "
                f"({errno.errorcode.get(exc.errno, '?')}, {len(text) / 1024:.0f} kB to write); {kept}",
                (f"free space on the filesystem of {self.path.parent} (df -h {self.path.parent}) and run the "
                 f"command again; a step that was running is run again by 'tmdflow launch'" if full else
                 f"make {self.path.parent} writable (or move the store: TMDFLOW_DB_URI=embedded:<file>) and run "
                 f"the command again"),
            ) from None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
