"""An in-process MongoDB stand-in that checks every write as a real server (and pymongo) would.

No MongoDB server can run on the development machine.  The ``strict_mongo`` fixture
(tests/conftest.py) makes ``pymongo.MongoClient(STRICT_MONGO_URI, ...)`` -- the call tmdflow's
production code makes -- return one mongomock client whose collections refuse, like a server:

* a document (insert/replace) or update that ``bson.encode`` refuses: numpy scalars/arrays,
  sets, arbitrary objects -> ``bson.errors.InvalidDocument``
* a document above 16 MiB -> ``pymongo.errors.DocumentTooLarge``
* keys containing '.' or starting with '$' in inserted/replaced documents -> ``InvalidDocument``
* an update document whose top-level keys are not all '$' operators, or a replacement that
  has one -> ``ValueError`` (pymongo's own validation)
* filters that cannot be encoded -> ``InvalidDocument``

``readonly = True`` plays a user with the ``read`` role: every write and index creation raises
``OperationFailure`` (code 13, Unauthorized).  ``writes`` and ``index_calls`` record what was
done, so tests can assert that readers did neither.
"""

from __future__ import annotations

import functools
from typing import Any

STRICT_MONGO_URI = "mongodb://user:SECRET@db.example.invalid:27017/"
MAX_BSON = 16 * 1024 * 1024

INSERTS = ("insert_one", "insert_many")
REPLACES = ("replace_one", "find_one_and_replace")
UPDATES = ("update_one", "update_many", "find_one_and_update")
DELETES = ("delete_one", "delete_many", "find_one_and_delete", "drop")
INDEXES = ("create_index", "create_indexes", "drop_index", "drop_indexes")


def _encode(doc: Any, what: str) -> int:
    import bson

    if not isinstance(doc, dict):
        raise TypeError(f"{what} must be a dict, got {type(doc).__name__}")
    return len(bson.encode(doc))  # raises bson.errors.InvalidDocument like a real write


def _check_keys(doc: Any, path: str = "") -> None:
    from bson.errors import InvalidDocument

    if isinstance(doc, dict):
        for key, value in doc.items():
            if not isinstance(key, str):
                raise InvalidDocument(f"documents must have only string keys, key was {key!r} at '{path}'")
            if "." in key or key.startswith("$"):
                raise InvalidDocument(f"key {key!r} at '{path or '/'}' must not contain '.' or start with '$'")
            _check_keys(value, f"{path}.{key}" if path else key)
    elif isinstance(doc, (list, tuple)):
        for i, value in enumerate(doc):
            _check_keys(value, f"{path}.{i}")


def check_document(doc: Any, what: str = "document") -> None:
    from pymongo.errors import DocumentTooLarge

    size = _encode(doc, what)
    if size > MAX_BSON:
        raise DocumentTooLarge(f"BSON document too large ({size} bytes)")
    _check_keys(doc)


def check_update(update: Any) -> None:
    from pymongo.errors import DocumentTooLarge

    if isinstance(update, list):  # aggregation-pipeline update
        for stage in update:
            if not isinstance(stage, dict) or not stage or not all(k.startswith("$") for k in stage):
                raise ValueError("update pipeline stages must be operator documents")
            _encode(stage, "update stage")
        return
    if not isinstance(update, dict) or not update:
        raise ValueError("update cannot be empty")
    first = next(iter(update))
    if not all(k.startswith("$") for k in update):  # pymongo: validate_ok_for_update
        raise ValueError(f"update only works with $ operators (key {first!r})")
    if _encode(update, "update") > MAX_BSON:
        raise DocumentTooLarge("update document too large")


def check_replacement(doc: Any) -> None:
    if isinstance(doc, dict) and doc and next(iter(doc)).startswith("$"):  # pymongo: validate_ok_for_replace
        raise ValueError("replacement can not include $ operators")
    check_document(doc, "replacement")


class StrictMongo:
    """What the fixture yields: the URI to configure, the mongomock client behind it, and the
    record of writes / index calls."""

    uri = STRICT_MONGO_URI

    def __init__(self) -> None:
        import mongomock

        self.client = mongomock.MongoClient()
        self.readonly = False
        self.writes: list[tuple[str, str]] = []  # (collection, method)
        self.index_calls: list[tuple[str, str]] = []
        self.client_kwargs: list[dict] = []  # the options every MongoClient(...) call passed

    def owns(self, collection) -> bool:
        return collection.database.client is self.client

    def dump(self) -> str:
        """Every document of every database, as text (to grep for secrets)."""
        import bson.json_util

        return bson.json_util.dumps({db: {c: list(self.client[db][c].find({}))
                                          for c in self.client[db].list_collection_names()}
                                     for db in self.client.list_database_names()})

    # -- the checks, wrapped around mongomock's Collection methods -------------------------
    def wrap(self, name: str, original):
        strict = self

        @functools.wraps(original)
        def method(coll, *args, **kwargs):
            if not strict.owns(coll):
                return original(coll, *args, **kwargs)
            from pymongo.errors import OperationFailure

            kind = ("index" if name in INDEXES else "write" if name in INSERTS + REPLACES + UPDATES + DELETES
                    else "bulk" if name == "bulk_write" else "read")
            if kind != "read" and strict.readonly:
                raise OperationFailure(f"not authorized on {coll.database.name} to execute command {{ {name}: "
                                       f"\"{coll.name}\" }}", code=13)
            filt = kwargs.get("filter", args[0] if args and name not in INSERTS + INDEXES else None)
            if isinstance(filt, dict):
                _encode(filt, "filter")
            if name == "insert_one":
                check_document(kwargs.get("document", args[0] if args else None))
            elif name == "insert_many":  # a generator (FireWorks passes one) is read once: hand on a list
                docs = list(kwargs.pop("documents", args[0] if args else []))
                args = args[1:]
                for doc in docs:
                    check_document(doc)
                kwargs["documents"] = docs
            elif name in REPLACES:
                check_replacement(kwargs.get("replacement", args[1] if len(args) > 1 else None))
            elif name in UPDATES:
                check_update(kwargs.get("update", args[1] if len(args) > 1 else None))
            elif name == "bulk_write":
                raise NotImplementedError("strict_mongo: bulk_write is not checked; add it when tmdflow uses it")
            if kind == "index":
                strict.index_calls.append((coll.name, name))
            elif kind != "read":
                strict.writes.append((coll.name, name))
            return original(coll, *args, **kwargs)

        return method

    def install(self, monkeypatch) -> None:
        import mongomock.collection
        import mongomock.gridfs
        import pymongo

        mongomock.gridfs.enable_gridfs_integration()  # FireWorks' LaunchPad opens a GridFS store

        for name in INSERTS + REPLACES + UPDATES + DELETES + INDEXES + ("bulk_write",):
            monkeypatch.setattr(mongomock.collection.Collection, name,
                                self.wrap(name, getattr(mongomock.collection.Collection, name)))
        real = pymongo.MongoClient
        strict = self

        def client_factory(host=None, *args, **kwargs):
            if host == strict.uri:
                strict.client_kwargs.append(dict(kwargs))
                return strict.client
            return real(host, *args, **kwargs)

        monkeypatch.setattr(pymongo, "MongoClient", client_factory)
