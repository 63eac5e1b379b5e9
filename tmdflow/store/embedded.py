"""tmdflow's embedded database: FireWorks' mongomock-persistence mode made safe.

mongomock-persistence loads a JSON file when a client is created and writes it back (in place)
when the interpreter exits.  Its sharp edges, and what this module does about each:

* saved only on clean exit          -> :meth:`EmbeddedDatabase.save` after every completed step
* non-atomic writes                  -> temp file + fsync + rename; the library's exit hook is
                                        detached and replaced by the atomic save
* every client has its own copy      -> exactly one client per process and file, shared by the
                                        LaunchPad and tmdflow's collections
* unsafe with two processes          -> an exclusive lock (fcntl) held for the process lifetime;
                                        a second process waits ``timeout`` s, then fails clearly
* no persisted indexes               -> :func:`tmdflow.store.results.ensure_indexes` on every open
* a truncated/corrupted file         -> StoreCorrupted naming the file and the backup to restore
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import tempfile
import time
from pathlib import Path

from ..errors import StoreBusy, StoreCorrupted


_OPEN: dict[Path, "EmbeddedDatabase"] = {}


class EmbeddedDatabase:
    def __init__(self, path: Path, timeout: float) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fh = self._acquire_lock(timeout)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._atomic_write("{}")
        self._check_readable()
        os.environ["MONGOMOCK_SERVERSTORE_FILE"] = str(self.path)
        import mongomock_persistence  # noqa: F401  (patches mongomock's store classes)
        from mongomock import MongoClient

        self.client = MongoClient()
        finalizer = getattr(self.client._store, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()  # replace the library's non-atomic exit write by ours
        atexit.register(self.close)

    # -- public -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, timeout: float = 30.0) -> "EmbeddedDatabase":
        key = Path(path).expanduser().resolve()
        if key not in _OPEN:
            _OPEN[key] = cls(key, timeout)
        return _OPEN[key]

    def save(self) -> None:
        """Write the whole store atomically (temp file in the same directory, fsync, rename)."""
        import bson.json_util

        self._atomic_write(bson.json_util.dumps(self.client._store.to_dict()))

    def close(self) -> None:
        if self._lock_fh is None:
            return
        try:
            self.save()
        finally:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None
            _OPEN.pop(self.path, None)

    # -- internals --------------------------------------------------------------------------
    def _acquire_lock(self, timeout: float):
        lock_path = self.path.with_name(self.path.name + ".lock")
        fh = open(lock_path, "a+")
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
                        "MongoDB server (TMDFLOW_DB_URI=mongodb://...) for concurrent launchers",
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        return fh

    def _check_readable(self) -> None:
        try:
            import bson.json_util

            data = bson.json_util.loads(self.path.read_text())
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
        except (ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None
            raise StoreCorrupted(
                f"the embedded store {self.path} is damaged ({exc.__class__.__name__}: {str(exc)[:80]})",
                f"restore a backup: tmdflow db restore BACKUP.json (backups are made by "
                f"'tmdflow db backup'); the damaged file was left untouched",
            ) from None

    def _atomic_write(self, text: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
