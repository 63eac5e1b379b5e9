"""``tmdflow db backup`` / ``db restore``: a whole database as one JSON file, and back.

Rules (docs/user-guide.md, "Backup and restore"):

* A backup holds every collection (FireWorks' LaunchPad and tmdflow's), no credential: every
  secret of the database URI is scrubbed from it (older stores kept the URI in FireWorker
  records), and the file is written atomically with mode 0600.
* A restore reads and validates the **whole** backup first -- its shape, FireWorks' id counter
  against the ids it holds, the workflows' links, every tmdflow document against its schema,
  unique ids, every pinned preset against its hash and every Firework's pinned preset present --
  and touches the database only when all of it holds.  Then it writes a backup of
  the current content beside the store (``pre-restore-<time>.json``), replaces the content and
  rebuilds the indexes.  A bad backup changes nothing and says what is wrong.

Plain functions over a database handle; no FireWorks import.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from ..errors import BackupInvalid, StoreWriteFailed
from ..identity import content_hash
from .documents import (
    BandStructureDoc, CheckpointDoc, ConvergenceDoc, FiguresDoc, MaterialDocument, PhononDoc, TaskDocument,
)
from .pinned_presets import PINNED_PRESETS

#: FireWorks' collections a LaunchPad cannot work without
LAUNCHPAD_COLLECTIONS = ("fireworks", "workflows", "launches", "fw_id_assigner")
#: tmdflow's collections: the schema of their documents and the field that must be unique
TMDFLOW_COLLECTIONS = {
    "tasks": (TaskDocument, "task_id"), "materials": (MaterialDocument, "material_id"),
    "bandstructures": (BandStructureDoc, "bandstructure_id"), "figures": (FiguresDoc, "material_id"),
    "convergence": (ConvergenceDoc, "convergence_id"), "phonons": (PhononDoc, "material_id"),
    "checkpoints": (CheckpointDoc, "checkpoint_id"),
}
#: problems listed in one error at the most (the rest are counted)
_MAX_LISTED = 12


def export_database(db, uri: str = "") -> dict[str, list[dict]]:
    """Every collection (LaunchPad's included), with every secret of ``uri`` scrubbed."""
    data = {name: list(db[name].find({})) for name in sorted(db.list_collection_names())
            if not name.startswith("system.")}
    return _scrubbed(data, uri) if uri else data


def _scrubbed(value: Any, uri: str) -> Any:
    from .uri import scrub

    if isinstance(value, str):
        return scrub(value, uri)
    if isinstance(value, dict):
        return {k: _scrubbed(v, uri) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, uri) for v in value]
    return value


def write_backup(path: Path, data: dict[str, list[dict]]) -> None:
    """Atomically, mode 0600 (a backup holds everything the store holds)."""
    import bson.json_util

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(bson.json_util.dumps(data))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise StoreWriteFailed(f"cannot write the backup {path}: {exc.strerror or exc}",
                               "choose a directory you can write with free space; nothing was changed") from None


def read_backup(path: Path) -> Any:
    """The parsed file; BackupInvalid when it is missing, binary or not (extended) JSON."""
    import bson.json_util

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BackupInvalid(f"backup file {path} not found", "give the file 'tmdflow db backup FILE' wrote; nothing was changed") from None
    except IsADirectoryError:
        raise BackupInvalid(f"{path} is a directory, not a backup file", "give the file 'tmdflow db backup' wrote; nothing was changed") \
            from None
    except UnicodeDecodeError as exc:
        raise BackupInvalid(f"{path} is not a tmdflow backup: binary content at byte {exc.start}",
                            "give the JSON file 'tmdflow db backup FILE' wrote; nothing was changed") from None
    except OSError as exc:
        raise BackupInvalid(f"cannot read {path}: {exc.strerror or exc}", "check the path and its permissions; nothing was changed") \
            from None
    try:
        return bson.json_util.loads(text)
    except ValueError as exc:
        raise BackupInvalid(f"{path} is not a tmdflow backup: not JSON ({str(exc)[:100]})",
                            "give the JSON file 'tmdflow db backup FILE' wrote; nothing was changed") from None


@dataclass(frozen=True)
class BackupSummary:
    counts: dict[str, int]  # collection -> documents


def validate_backup(data: Any, source: str = "backup") -> BackupSummary:
    """Check everything a restore relies on; BackupInvalid listing every problem found."""
    if not isinstance(data, dict):
        raise BackupInvalid(f"{source}: a backup is a JSON object of collections, this is a {type(data).__name__}",
                            "give the file 'tmdflow db backup FILE' wrote; nothing was changed")
    problems: list[str] = []
    for name, docs in data.items():
        if not isinstance(name, str) or not name or name.startswith(("system.", "$")) or "\x00" in name:
            problems.append(f"collection name {name!r} is not allowed")
        elif not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
            problems.append(f"collection '{name}' is not a list of documents")
    if problems:
        raise _invalid(source, problems)
    missing = [c for c in LAUNCHPAD_COLLECTIONS if c not in data]
    if missing:
        raise _invalid(source, [f"FireWorks' collection(s) {missing} missing (every tmdflow store has them)"])
    problems += _check_launchpad(data)
    for name, (model, key) in TMDFLOW_COLLECTIONS.items():
        problems += _check_documents(name, data.get(name, []), model, key)
    problems += _check_pinned_presets(data)
    if problems:
        raise _invalid(source, problems)
    return BackupSummary({name: len(docs) for name, docs in data.items()})


def _check_launchpad(data: dict) -> list[str]:
    problems = []
    counters = data["fw_id_assigner"]
    fw_ids = [fw.get("fw_id") for fw in data["fireworks"]]
    launch_ids = [ln.get("launch_id") for ln in data["launches"]]
    if any(not isinstance(i, int) or isinstance(i, bool) for i in fw_ids):
        problems.append("a Firework without an integer fw_id")
    if any(not isinstance(i, int) or isinstance(i, bool) for i in launch_ids):
        problems.append("a launch without an integer launch_id")
    if len(set(fw_ids)) != len(fw_ids):
        problems.append("fw_id used twice in 'fireworks'")
    if len(counters) != 1 or not all(isinstance(counters[0].get(k), int)
                                     for k in ("next_fw_id", "next_launch_id")):
        problems.append("'fw_id_assigner' must hold one document with integer next_fw_id and next_launch_id")
    elif not problems:
        if fw_ids and counters[0]["next_fw_id"] <= max(fw_ids):
            problems.append(f"FireWorks' id counter next_fw_id={counters[0]['next_fw_id']} is not above the "
                            f"largest fw_id {max(fw_ids)}: new Fireworks would reuse ids")
        if launch_ids and counters[0]["next_launch_id"] <= max(launch_ids):
            problems.append(f"next_launch_id={counters[0]['next_launch_id']} is not above the largest launch_id "
                            f"{max(launch_ids)}")
    known = set(fw_ids)
    for wf in data["workflows"]:
        nodes = wf.get("nodes")
        if not isinstance(nodes, list) or not isinstance(wf.get("links"), dict):
            problems.append(f"workflow {wf.get('name')!r} has no nodes/links")
            continue
        lost = [n for n in nodes if n not in known]
        if lost:
            problems.append(f"workflow {wf.get('name')!r} names Fireworks {lost[:5]} that the backup does not hold")
    return problems


def _check_documents(name: str, docs: list[dict], model, key: str) -> list[str]:
    problems, seen = [], set()
    for i, doc in enumerate(docs):
        body = {k: v for k, v in doc.items() if k != "_id"}
        try:
            model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(document)"
            problems.append(f"{name}[{i}] ({body.get(key, '?')}): {where}: {first['msg']}")
            continue
        if body[key] in seen:
            problems.append(f"{name}: {key} '{body[key]}' appears twice")
        seen.add(body[key])
    return problems


def _check_pinned_presets(data: dict) -> list[str]:
    """Each pinned preset must still hash to its key, and every Firework's ``preset_hash`` must
    be in the backup: a restored chain whose preset is missing or altered could not run a step
    (tmdflow.store.pinned_presets.load_pinned), so such a backup is refused before the restore."""
    problems, held = [], set()
    for i, doc in enumerate(data.get(PINNED_PRESETS, [])):
        key, values = doc.get("_id"), doc.get("values")
        found = content_hash(values) if isinstance(values, dict) else None
        if not isinstance(key, str) or found != key:
            what = f"values whose hash is {found[:12]}" if found else "no preset values"
            problems.append(f"{PINNED_PRESETS}[{i}] ({str(key)[:12]}): holds {what}, not the ones its key names "
                            "(altered)")
        else:
            held.add(key)
    users: dict[str, list[str]] = {}
    for fw in data["fireworks"]:
        tasks = (fw.get("spec") or {}).get("_tasks") or []
        for task in tasks if isinstance(tasks, list) else []:
            digest = task.get("preset_hash") if isinstance(task, dict) else None
            if isinstance(digest, str) and digest not in held:
                users.setdefault(digest, []).append(str(fw.get("name", fw.get("fw_id"))))
    for digest, names in users.items():
        problems.append(f"the preset {digest[:12]} pinned by {len(names)} Firework(s) ({', '.join(names[:3])}"
                        f"{', ...' if len(names) > 3 else ''}) is not in '{PINNED_PRESETS}' (or is altered)")
    return problems


def _invalid(source: str, problems: list[str]) -> BackupInvalid:
    listed = problems[:_MAX_LISTED]
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    return BackupInvalid(f"{source} cannot be restored:\n  " + "\n  ".join(listed) + more,
                         "nothing was changed; restore another backup (tmdflow db backup writes them)")


def pre_restore_path(directory: Path) -> Path:
    """Where the content a restore replaces is kept: ``pre-restore-<UTC time>.json``."""
    return Path(directory) / f"pre-restore-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"


def replace_content(db, data: dict[str, Iterable[dict]]) -> None:
    """Drop every collection and insert the (validated) backup's documents."""
    for name in db.list_collection_names():
        if not name.startswith("system."):
            db[name].drop()
    for name, docs in data.items():
        docs = list(docs)
        if docs:
            db[name].insert_many(docs)
