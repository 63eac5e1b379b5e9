"""Opening the configured database: a MongoDB server URI or the embedded file store.

One database holds FireWorks' LaunchPad collections and tmdflow's own.  In embedded mode the
LaunchPad is given the process's single embedded client (see embedded.py for why).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from ..settings import Settings
from .embedded import EmbeddedDatabase


@dataclass
class Connection:
    launchpad: object  # fireworks.LaunchPad
    db: object  # pymongo / mongomock Database
    embedded: EmbeddedDatabase | None
    description: str  # safe to print (no password)

    def checkpoint(self) -> None:
        """Make completed work durable (embedded: atomic save; MongoDB: already durable)."""
        if self.embedded is not None:
            self.embedded.save()


def redact(uri: str) -> str:
    """mongodb://user:secret@host -> mongodb://user:***@host"""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", uri)


def embedded_path(uri: str) -> Path | None:
    if uri.startswith("embedded:"):
        return Path(uri[len("embedded:"):]).expanduser()
    return None


@contextmanager
def _launchpad_client(client) -> Iterator[None]:
    """Let FireWorks' LaunchPad use ``client`` instead of opening its own."""
    import fireworks.core.launchpad as fw_launchpad

    original = fw_launchpad.MongoClient
    fw_launchpad.MongoClient = lambda *args, **kwargs: client
    try:
        yield
    finally:
        fw_launchpad.MongoClient = original


def connect(settings: Settings) -> Connection:
    from fireworks import LaunchPad

    from .results import ensure_indexes

    uri = settings.db_uri
    path = embedded_path(uri)
    if path is not None:
        emb = EmbeddedDatabase.open(path, settings.db_lock_timeout)
        import mongomock.gridfs

        mongomock.gridfs.enable_gridfs_integration()  # LaunchPad opens a GridFS fallback store
        with _launchpad_client(emb.client):
            lpad = LaunchPad(host="localhost", name=settings.db_name, strm_lvl="ERROR")
        conn = Connection(lpad, lpad.db, emb, f"embedded store {emb.path} (database '{settings.db_name}')")
    elif uri.startswith(("mongodb://", "mongodb+srv://")):
        lpad = LaunchPad(host=uri, name=settings.db_name, strm_lvl="ERROR", uri_mode=True,
                         mongoclient_kwargs={"serverSelectionTimeoutMS": 10000})
        conn = Connection(lpad, lpad.db, None, f"MongoDB {redact(uri)} (database '{settings.db_name}')")
    else:
        raise InputError(
            f"db_uri '{redact(uri)}' is neither mongodb://... nor embedded:<file>",
            "set TMDFLOW_DB_URI, e.g. mongodb://user:pass@host:27017/ or embedded:~/tmdflow-store.json",
        )
    _initialise_launchpad(conn)
    ensure_indexes(conn.db, unique=conn.embedded is None)
    return conn


def _initialise_launchpad(conn: Connection) -> None:
    """A new database gets FireWorks' id counters; an existing one is never reset."""
    lpad = conn.launchpad
    if lpad.fw_id_assigner.count_documents({}) > 0:
        return
    if lpad.fireworks.count_documents({}) or lpad.workflows.count_documents({}):
        from ..errors import StoreCorrupted

        raise StoreCorrupted(
            f"{conn.description} holds Fireworks but no FireWorks id counter",
            "restore a backup (tmdflow db restore FILE) or repair the LaunchPad with FireWorks' lpad tools",
        )
    lpad.reset("", require_password=False)
    if conn.embedded is not None:
        # FireWorks' reset builds unique indexes; in mongomock they cost a full scan per insert
        # and are not persisted anyway (see results.ensure_indexes)
        for coll in (lpad.fireworks, lpad.launches, lpad.workflows):
            coll.drop_indexes()
    conn.checkpoint()
