"""The presets pinned by submitted workflows: each distinct one stored once, under its content's hash.

``tmdflow submit`` pins a chain's preset: it writes the fully resolved values into the
``pinned_presets`` collection with ``_id`` = the SHA-256 of their canonical JSON
(:func:`tmdflow.identity.content_hash`), and each Firetask carries only that hash (1008
workflows of one preset: one document, not 5040 copies; docs/performance.md).  A step loads the
values by hash where it runs (:func:`load_pinned`) and stops before any work when the document
is missing or no longer holds what its hash says.

The collection lives in the database that holds the LaunchPad and tmdflow's results: the
embedded store and a MongoDB server alike (a backup holds it like every collection).  Documents
are never deleted: they are small, and a workflow archived long ago may be rerun.  Plain
functions over a database handle; no FireWorks import.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..errors import InputError
from ..identity import canonical_json, content_hash

PINNED_PRESETS = "pinned_presets"

#: what a step whose pinned preset cannot be loaded tells the user to do
RESTORE = ("resubmit the workflow ('tmdflow submit <file>'): a submission stores its preset; when the preset "
           "resolves to the same values they go under the same hash and 'tmdflow rerun <fw_id>' runs this chain "
           "again, otherwise the workflow needs a new chain ('tmdflow submit --force <file>' if it says 'already "
           "submitted'); or restore a backup of the store that holds the preset ('tmdflow db restore FILE')")


def pinned_form(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as they are stored and hashed: plain JSON data (tuples as lists, keys as text)."""
    return json.loads(canonical_json(dict(values)))


def preset_hash(values: Mapping[str, Any]) -> str:
    """The key a preset's resolved ``values`` are pinned under."""
    return content_hash(pinned_form(values))


def pin_preset(db, values: Mapping[str, Any]) -> str:
    """Store ``values`` under their hash (written again when already there: the same content, so a
    damaged document is repaired) and return the hash."""
    from pymongo.errors import DuplicateKeyError

    stored = pinned_form(values)
    digest = content_hash(stored)
    try:
        db[PINNED_PRESETS].replace_one({"_id": digest}, {"values": stored}, upsert=True)
    except DuplicateKeyError:  # another submitter inserted it between this upsert's read and write
        db[PINNED_PRESETS].replace_one({"_id": digest}, {"values": stored})
    return digest


def load_pinned(db, digest: str) -> dict[str, Any]:
    """The values pinned under ``digest``; an :class:`InputError` when no document has that key
    or the one there holds other values (the hash of its content is not its key)."""
    doc = db[PINNED_PRESETS].find_one({"_id": digest})
    if doc is None:
        raise InputError(f"the pinned preset {digest} of this workflow is not in the store (no document in "
                         f"'{PINNED_PRESETS}'); nothing was run", RESTORE)
    values = doc.get("values")
    found = content_hash(values) if isinstance(values, dict) else None
    if found != digest:
        what = f"values whose hash is {found}" if found else "no preset values"
        raise InputError(f"the pinned preset {digest} of this workflow is not in the store: the document under "
                         f"that hash in '{PINNED_PRESETS}' holds {what} (it was altered); nothing was run", RESTORE)
    return values
