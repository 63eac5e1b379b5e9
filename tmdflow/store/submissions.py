"""An atomic duplicate check for ``submit`` on a MongoDB server.

``submit`` reads which workflow keys exist, then inserts the rest: two processes submitting the
same workflow at the same moment would both insert it.  Before inserting, each key is claimed
in ``tmdflow_submissions`` with ``_id = "<key>#<n>"``, n = the number of workflows of that key
(any state) the submitter saw; ``_id`` is unique on every server, so of two racing submitters
exactly one wins, the other sees DuplicateKeyError and reports the key as already submitted.
``--force`` and re-submission after archiving claim the next n, so they work unchanged.

A claim is ``pending`` until the workflows are inserted, then ``done``; a failed insert deletes
its claims.  A pending claim older than :data:`STALE_SECONDS` (its submitter died) is taken
over.  The embedded store needs none of this: its lock admits one writer.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from ..errors import AlreadySubmitted

SUBMISSIONS = "tmdflow_submissions"
STALE_SECONDS = 600.0
WAIT_SECONDS = 30.0


def generations(workflows, keys: list[str]) -> dict[str, int]:
    """key -> the number of workflows (any state, archived included) holding it."""
    counts = Counter(doc["metadata"]["tmdflow_key"] for doc in
                     workflows.find({"metadata.tmdflow_key": {"$in": list(keys)}}, {"metadata.tmdflow_key": 1}))
    return {k: counts.get(k, 0) for k in keys}


def claim(db, keys: list[str], gens: dict[str, int]) -> tuple[list[str], list[str]]:
    """Claim ``keys`` at their generations; returns (won, lost) keys.  Stale claims of dead
    submitters are taken over."""
    from pymongo.errors import BulkWriteError

    if not keys:
        return [], []
    now = datetime.now(timezone.utc)
    docs = [{"_id": f"{k}#{gens[k]}", "key": k, "generation": gens[k], "state": "pending", "at": now,
             "host": socket.gethostname(), "pid": os.getpid()} for k in keys]
    try:
        db[SUBMISSIONS].insert_many(docs, ordered=False)
        return list(keys), []
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise
        lost_ids = {docs[e["index"]]["_id"] for e in errors}
    retry = []
    stale_before = now - timedelta(seconds=STALE_SECONDS)
    for doc in docs:
        if doc["_id"] in lost_ids:
            taken = db[SUBMISSIONS].delete_one({"_id": doc["_id"], "state": "pending", "at": {"$lt": stale_before}})
            if taken.deleted_count:
                retry.append(doc["key"])
    won = [d["key"] for d in docs if d["_id"] not in lost_ids]
    lost = [d["key"] for d in docs if d["_id"] in lost_ids and d["key"] not in retry]
    if retry:
        more_won, more_lost = claim(db, retry, gens)
        won, lost = won + more_won, lost + more_lost
    return won, lost


def settle(db, keys: list[str], gens: dict[str, int]) -> None:
    db[SUBMISSIONS].update_many({"_id": {"$in": [f"{k}#{gens[k]}" for k in keys]}}, {"$set": {"state": "done"}})


def release(db, keys: list[str], gens: dict[str, int]) -> None:
    db[SUBMISSIONS].delete_many({"_id": {"$in": [f"{k}#{gens[k]}" for k in keys]}, "state": "pending"})


def wait_for_winner(workflows, db, keys: list[str], gens: dict[str, int], wait: float = WAIT_SECONDS) -> dict[str, dict]:
    """The workflows another submitter is inserting for ``keys`` (it claimed them first)."""
    deadline = time.monotonic() + wait
    while True:
        found = {doc["metadata"]["tmdflow_key"]: doc for doc in workflows.find(
            {"metadata.tmdflow_key": {"$in": list(keys)}, "state": {"$ne": "ARCHIVED"}},
            {"metadata": 1, "nodes": 1, "links": 1})}
        if set(keys) <= set(found):
            return found
        if time.monotonic() >= deadline:
            missing = sorted(set(keys) - set(found))
            holder = db[SUBMISSIONS].find_one({"_id": f"{missing[0]}#{gens[missing[0]]}"}) or {}
            raise AlreadySubmitted(
                f"{len(missing)} workflow(s), e.g. {missing[0]}, are being submitted by another process "
                f"({holder.get('host', '?')} pid {holder.get('pid', '?')} since {holder.get('at', '?')}) "
                f"that has not finished in {wait:.0f} s",
                f"run 'tmdflow status' in a minute; if that submitter died, submit again after "
                f"{STALE_SECONDS / 60:.0f} min (its claim then expires)",
            )
        time.sleep(0.5)
