"""Opening the configured database: a MongoDB server URI or the embedded file store.

One database holds FireWorks' LaunchPad collections and tmdflow's own.  The LaunchPad is given
the process's single client (embedded: the one mongomock client of the file; MongoDB: one
pymongo MongoClient per URI, cached), so FireWorks and tmdflow share one connection pool.

Readers (``connect(settings, readonly=True)``: status, query, table1, report, db info) never
write: no index creation (a read-only MongoDB user can query), no LaunchPad reset, and for the
embedded store no lock -- they read its last atomic checkpoint while a launcher holds it.
Writers create the indexes (tmdflow's and FireWorks') once per process.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import InputError, StoreConfigError, StoreError, StoreUnreachable
from ..settings import Settings
from .embedded import EmbeddedDatabase, check_path
from .uri import hosts, redact, scrub

__all__ = ["Connection", "connect", "redact", "embedded_path", "ensure_all_indexes", "mongo_client",
           "store_error_from"]


@dataclass
class Connection:
    launchpad: object  # fireworks.LaunchPad
    db: object  # pymongo / mongomock Database
    embedded: object | None  # EmbeddedDatabase (writer) or embedded.Snapshot (reader)
    description: str  # safe to print (no password)
    readonly: bool = False
    uri: str = ""

    def checkpoint(self) -> None:
        """Make completed work durable (embedded: atomic save; MongoDB: already durable).
        A reader's checkpoint does nothing."""
        if self.embedded is not None and not self.readonly:
            self.embedded.save()


def embedded_path(uri: str) -> Path | None:
    if uri.startswith("embedded:"):
        return Path(uri[len("embedded:"):]).expanduser()
    return None


@contextmanager
def launchpad_client(client) -> Iterator[None]:
    """Let FireWorks' LaunchPad use ``client`` instead of opening its own."""
    import fireworks.core.launchpad as fw_launchpad

    original = fw_launchpad.MongoClient
    fw_launchpad.MongoClient = lambda *args, **kwargs: client
    try:
        yield
    finally:
        fw_launchpad.MongoClient = original


# -- MongoDB ----------------------------------------------------------------------------------

_CLIENTS: dict[tuple[str, float], object] = {}
_CONNECTIONS: dict[tuple, Connection] = {}
_INDEXED: set[tuple] = set()


def store_error_from(exc: Exception, uri: str, timeout: float | None = None) -> StoreError:
    """A pymongo error as a named StoreError whose text holds no secret of ``uri``."""
    from pymongo import errors as pe

    where = f"MongoDB at {hosts(uri)} ({redact(uri)})"
    text = scrub(str(exc), uri)[:300]
    if isinstance(exc, pe.ServerSelectionTimeoutError) or isinstance(exc, pe.AutoReconnect):
        return StoreUnreachable(
            f"no MongoDB server answered at {hosts(uri)} within {timeout or '?'} s ({redact(uri)})",
            "start the server or check the host, port, network/VPN and TLS options in TMDFLOW_DB_URI; "
            "raise TMDFLOW_DB_TIMEOUT_SECONDS for a slow link",
        )
    if isinstance(exc, pe.OperationFailure) and exc.code in (18, 8000):
        return StoreUnreachable(f"{where} refused the credentials: {text}",
                                "check the user name, password and authSource in TMDFLOW_DB_URI")
    if isinstance(exc, pe.OperationFailure) and exc.code == 13:
        return StoreError(f"{where} did not allow this operation: {text}",
                          "use a MongoDB user with readWrite on the database for submit/launch/db restore; "
                          "a read-only user can run status, query, table1, report and db info")
    if isinstance(exc, pe.DocumentTooLarge):
        return StoreError(f"a document is larger than {where} accepts: {text}",
                          "report this: tmdflow checks document sizes before writing")
    if isinstance(exc, (pe.InvalidURI, pe.ConfigurationError, ValueError, TypeError)):
        return StoreConfigError(f"db_uri '{redact(uri)}' cannot be used: {text}", _uri_remedy(str(exc)))
    return StoreError(f"{where} failed: {exc.__class__.__name__}: {text}",
                      "check the server's log and 'tmdflow db info'; run the command again")


def _uri_remedy(message: str) -> str:
    low = message.lower()
    if "escaped" in low or "rfc 3986" in low:
        return ("percent-encode the user name and password (python -c \"import urllib.parse; "
                "print(urllib.parse.quote_plus('PASSWORD'))\"): '@' is %40, ':' is %3A, '/' is %2F")
    if "empty string is not valid username" in low:
        return "give the user name before the ':' (mongodb://USER:PASSWORD@host/), or no credentials at all"
    if "port" in low:
        return "use a port between 1 and 65535 (MongoDB's default is 27017)"
    if "dns" in low or "srv" in low or "resolve" in low:
        return ("check the cluster's host name (mongodb+srv:// needs a DNS SRV record _mongodb._tcp.HOST); "
                "use mongodb://host:port/ for a server without one")
    return "fix TMDFLOW_DB_URI (mongodb://user:password@host:27017/?authSource=admin)"


def mongo_client(uri: str, timeout_seconds: float):
    """This process's MongoClient for ``uri`` (created once, checked with a ping)."""
    key = (uri, float(timeout_seconds))
    if key in _CLIENTS:
        return _CLIENTS[key]
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    ms = int(timeout_seconds * 1000)
    try:
        client = MongoClient(uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
    except (PyMongoError, ValueError, TypeError) as exc:
        raise store_error_from(exc, uri, timeout_seconds) from None
    try:
        client.admin.command("ping")  # needs no privileges; fails within the timeout
    except PyMongoError as exc:
        client.close()
        raise store_error_from(exc, uri, timeout_seconds) from None
    _CLIENTS[key] = client
    return client


def _timeout(settings: Settings) -> float:
    return float(settings.db_timeout_seconds)


# -- connect ----------------------------------------------------------------------------------

def connect(settings: Settings, readonly: bool = False) -> Connection:
    """The database of ``settings``.  ``readonly``: for commands that only read (see module doc)."""
    from pymongo.errors import PyMongoError

    from .launchpad import SerializedLaunchPad as LaunchPad  # FireWorks' ping-thread race closed

    uri = settings.db_uri
    path = embedded_path(uri)
    if path is None and not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise InputError(
            f"db_uri '{redact(uri)}' is neither mongodb://... nor embedded:<file>",
            "set TMDFLOW_DB_URI, e.g. mongodb://user:pass@host:27017/ or embedded:~/tmdflow-store.json",
        )
    key = (uri, settings.db_name, readonly)
    if path is not None:
        path = check_path(path, uri)
        emb = EmbeddedDatabase.snapshot(path) if readonly else EmbeddedDatabase.open(path, settings.db_lock_timeout)
        key = (str(path), settings.db_name, emb.readonly, id(emb))
        if key in _CONNECTIONS:
            return _CONNECTIONS[key]
        import mongomock.gridfs

        mongomock.gridfs.enable_gridfs_integration()  # LaunchPad opens a GridFS fallback store
        with launchpad_client(emb.client):
            lpad = LaunchPad(host="localhost", name=settings.db_name, strm_lvl="ERROR")
        conn = Connection(lpad, lpad.db, emb, f"embedded store {path} (database '{settings.db_name}')",
                          readonly=emb.readonly, uri=uri)
        if readonly and emb.readonly:
            _say_snapshot(emb)
    else:
        if key in _CONNECTIONS:
            return _CONNECTIONS[key]
        client = mongo_client(uri, _timeout(settings))
        with launchpad_client(client):
            lpad = LaunchPad(host=uri, name=settings.db_name, strm_lvl="ERROR", uri_mode=True)
        conn = Connection(lpad, lpad.db, None, f"MongoDB {redact(uri)} (database '{settings.db_name}')",
                          readonly=readonly, uri=uri)
    try:
        _initialise_launchpad(conn)
        if not conn.readonly:
            _ensure_once(conn)
    except PyMongoError as exc:
        raise store_error_from(exc, uri, _timeout(settings)) from None
    _CONNECTIONS[key] = conn
    return conn


def _say_snapshot(snap) -> None:
    if not snap.exists:
        print(f"note: no store at {snap.path} yet ('tmdflow submit' or 'tmdflow db init' creates it)", file=sys.stderr)
    elif snap.holder:
        print(f"reading the store as checkpointed {snap.age_seconds():.0f} s ago; a launcher ({snap.holder}) "
              f"holds it", file=sys.stderr)


def _ensure_once(conn: Connection) -> None:
    key = (conn.uri, conn.db.name, id(conn.db.client))
    if key not in _INDEXED:
        ensure_all_indexes(conn)
        _INDEXED.add(key)


def ensure_all_indexes(conn: Connection) -> None:
    """tmdflow's indexes and FireWorks' own (LaunchPad.tuneup), idempotent.  Called by writing
    commands (once per process) and after ``db restore``; never by readers."""
    from .results import ensure_indexes

    if conn.readonly:
        raise StoreError("a read-only connection cannot create indexes", "connect with readonly=False")
    if conn.embedded is None:
        conn.launchpad.tuneup(bkground=True)
    ensure_indexes(conn.db, unique=conn.embedded is None)


def _initialise_launchpad(conn: Connection) -> None:
    """A new database gets FireWorks' id counters; an existing one is never reset.  A reader
    only checks."""
    lpad = conn.launchpad
    if lpad.fw_id_assigner.count_documents({}) > 0:
        return
    if lpad.fireworks.count_documents({}) or lpad.workflows.count_documents({}):
        from ..errors import StoreCorrupted

        raise StoreCorrupted(
            f"{conn.description} holds Fireworks but no FireWorks id counter",
            "restore a backup (tmdflow db restore FILE) or repair the LaunchPad with FireWorks' lpad tools",
        )
    if conn.readonly:
        return
    lpad.reset("", require_password=False)
    if conn.embedded is not None:
        # FireWorks' reset builds unique indexes; in mongomock they cost a full scan per insert
        # and are not persisted anyway (see results.ensure_indexes)
        for coll in (lpad.fireworks, lpad.launches, lpad.workflows):
            coll.drop_indexes()
    conn.checkpoint()


def reset_cache() -> None:
    """Forget (and close) this process's connections and clients (tests)."""
    _CONNECTIONS.clear()
    _INDEXED.clear()
    for client in _CLIENTS.values():
        client.close()
    _CLIENTS.clear()
