"""Python API for notebooks; mirrors the CLI.  Also importable from the package itself:

    import tmdflow
    tmdflow.submit("workflows/quick.yaml"); tmdflow.launch(); docs = tmdflow.query(formula="WSe2")
    docs[0].to_structure(); tmdflow.bandstructure(docs[0]); tmdflow.dataframe(); print(tmdflow.table1())

Results in the field's types (tmdflow.objects): ``doc.to_structure()`` / ``doc.to_atoms()``,
:func:`structure`, :func:`write_structure`, :func:`bandstructure` (pymatgen
``BandStructureSymmLine``), :func:`band_projections`, :func:`dataframe` (pandas).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .analysis.table1 import render, table1_rows
from .settings import Settings, load_settings
from .store.connection import Connection, connect, embedded_path
from .store.documents import BandStructureDoc, MaterialDocument, StructureDoc, TaskDocument
from .errors import StoreCorrupted
from .store.embedded import EmbeddedDatabase
from .store.results import MaterialQuery, ResultsStore, parts_of_step
from .workflow_spec import load_workflow

__all__ = [
    "submit", "launch", "prioritize", "rerun", "status", "query", "error_bars", "table1", "backup", "restore",
    "info", "structure", "write_structure", "bandstructure", "band_projections", "dataframe",
]


def _conn(settings: Settings | None, readonly: bool = False) -> tuple[Settings, Connection]:
    """``readonly``: the command only reads (no lock, no index creation, never a write; the
    embedded store is read as last checkpointed, also while a launcher holds it)."""
    settings = settings or load_settings()
    return settings, connect(settings, readonly=readonly)


def submit(workflow: str | Path, preset: str | None = None, force: bool = False, settings: Settings | None = None,
           calculator: str | None = None, materials: list[str] | None = None):
    from .fireworks import submit as fw_submit

    spec = load_workflow(Path(workflow), preset, calculator, materials)  # validated before the database is touched
    settings, conn = _conn(settings)
    return fw_submit(conn, spec, preset, force)


def launch(max_launches: int = 0, recover: bool = False, expiration_secs: int = 3600,
           max_seconds: float | None = None, settings: Settings | None = None,
           progress: Callable[[str], None] | None = None) -> dict:
    from .fireworks import launch_local, recover as fw_recover

    settings = settings or load_settings()
    settings.check_run_directories()  # work_dir / pseudo_dir usable, before the store is touched
    settings, conn = _conn(settings)
    rerun = fw_recover(conn, expiration_secs) if recover else []
    res = launch_local(conn, settings, max_launches, progress, max_seconds)
    # fizzled: [(fw_id, name, reason)]; interrupted: the signal number that stopped the launcher
    return {"launched": res.launched, "recovered": rerun, "fizzled": res.fizzled, "interrupted": res.interrupted,
            "requeued": res.requeued, "out_of_time": res.out_of_time,
            "max_seconds_too_short": res.max_seconds_too_short}


def prioritize(pattern: str, rank: int, settings: Settings | None = None):
    """Workflows whose key matches ``pattern`` run before those of lower rank (default 0)."""
    from .fireworks import prioritize as fw_prioritize

    _, conn = _conn(settings)
    return fw_prioritize(conn, pattern, rank)


def rerun(fw_ids: list[int], settings: Settings | None = None) -> list[int]:
    """Run these steps, and the steps after them, again (ids from ``status``)."""
    from .fireworks import rerun as fw_rerun

    _, conn = _conn(settings)
    return fw_rerun(conn, fw_ids)


@dataclass
class FireworkStatus:
    fw_id: int
    name: str
    state: str
    reason: str | None
    kept: list[str] = field(default_factory=list)  # labels of the finished parts it will reuse


@dataclass
class WorkflowStatus:
    key: str
    state: str
    fireworks: list[FireworkStatus]
    rank: int = 0  # tmdflow priority: higher ranks run first
    overrides: dict | None = None  # the workflow's preset overrides (None: submitted before they were recorded)


def _reason(lpad, fw_id: int) -> str | None:
    launch = lpad.launches.find_one({"fw_id": fw_id, "state": "FIZZLED"}, sort=[("launch_id", -1)])
    if not launch:
        return None
    exc = ((launch.get("action") or {}).get("stored_data") or {}).get("_exception") or {}
    trace = (exc.get("_stacktrace") or "").strip().splitlines()
    return next((l.strip() for l in reversed(trace) if l.strip() and not l.startswith(" ")), None) if trace else None


def _kept_labels(parts: list, fw: dict) -> list[str]:
    """What a step that has not finished will reuse (checkpoints: an Elk scan's finished points)."""
    if fw["state"] == "COMPLETED" or not parts:
        return []
    task = next((t for t in (fw.get("spec") or {}).get("_tasks") or [] if "step" in t and "formula" in t), None)
    if task is None:
        return []
    return [doc.label for doc in parts_of_step(parts, task["formula"], task["dimensionality"], task["preset"],
                                               task["calculator"], task["step"], task.get("settings_hash"))]


def status(settings: Settings | None = None) -> list[WorkflowStatus]:
    from .fireworks import INTERRUPTIONS, lost_runs

    _, conn = _conn(settings, readonly=True)
    lpad = conn.launchpad
    lost = lost_runs(conn)  # RUNNING, but their launcher on this host is gone
    parts = ResultsStore(conn.db).checkpoints()  # read once for every step below
    out = []
    for wf in lpad.workflows.find({}, sort=[("created_on", 1)]):
        fws = []
        for fw in lpad.fireworks.find({"fw_id": {"$in": wf["nodes"]}}, {"fw_id": 1, "name": 1, "state": 1,
                                      f"spec.{INTERRUPTIONS}": 1, "spec._tasks": 1}, sort=[("fw_id", 1)]):
            reason = _reason(lpad, fw["fw_id"]) if fw["state"] == "FIZZLED" else None
            if fw["fw_id"] in lost:
                reason = f"suspected lost: {lost[fw['fw_id']]}; 'tmdflow launch --recover' runs it again"
            elif fw["state"] == "READY" and (fw.get("spec") or {}).get(INTERRUPTIONS):
                last = fw["spec"][INTERRUPTIONS][-1]
                why = f"interrupted by {last['signal']}" if "signal" in last else f"lost ({last.get('lost')})"
                reason = f"{why} at {last.get('at')}; runs again on the next launch"
            fws.append(FireworkStatus(fw["fw_id"], fw["name"], fw["state"], reason, _kept_labels(parts, fw)))
        meta = wf.get("metadata", {})
        out.append(WorkflowStatus(meta.get("tmdflow_key", wf["name"]), wf["state"], fws, meta.get("tmdflow_rank", 0),
                                  meta.get("overrides")))
    return out


def query(formula: str | None = None, dimensionality: str | None = None, preset: str | None = None,
          settings: Settings | None = None, calculator: str | None = None) -> list[MaterialDocument]:
    """Material results, filtered; each with its structure (``doc.to_structure()``, also for
    documents written before the material stored it: read from its task documents)."""
    from .objects import with_structure

    _, conn = _conn(settings, readonly=True)
    store = ResultsStore(conn.db)
    return with_structure(store, store.materials(MaterialQuery(formula, dimensionality, preset, calculator)))


def _store(settings: Settings | None) -> ResultsStore:
    _, conn = _conn(settings, readonly=True)
    return ResultsStore(conn.db)


def structure(result: "MaterialDocument | TaskDocument | str", settings: Settings | None = None) -> StructureDoc:
    """The stored (relaxed) structure of a material result or a task (a document or its id);
    ``.to_structure()`` / ``.to_atoms()`` give pymatgen / ASE objects.  Unknown id: ResultNotFound."""
    from .objects import structure_of

    if isinstance(result, (MaterialDocument, TaskDocument)) and result.structure is not None:
        return result.structure
    return structure_of(_store(settings), result)


def write_structure(result: "MaterialDocument | TaskDocument | str", path: str | Path,
                    settings: Settings | None = None) -> Path:
    """Write the stored structure to ``path`` in the format its name says (``.cif``, ``POSCAR``
    / ``.vasp``, ``.extxyz``, ``.xyz``, ``.json``, ``.pwi``, ``.xsf`` ...: ASE's formats, then
    pymatgen's); an unknown suffix is an InputError, nothing is written."""
    from .objects import write_structure_file

    return write_structure_file(structure(result, settings), Path(path))


def bandstructure(result: "MaterialDocument | BandStructureDoc | str", kind: str = "soc",
                  settings: Settings | None = None):
    """A pymatgen ``BandStructureSymmLine`` of a material result's spin-orbit (``kind="soc"``) or
    scalar-relativistic (``"sr"``) bands on Gamma-M-K-Gamma (conventions: tmdflow.objects)."""
    from .objects import band_document, to_bandstructure

    store = None if isinstance(result, BandStructureDoc) and result.reciprocal_cell_inv_angstrom else \
        _store(settings)
    return to_bandstructure(band_document(store, result, kind), store)


def band_projections(result: "MaterialDocument | BandStructureDoc | str", kind: str = "soc",
                     settings: Settings | None = None):
    """<sigma_z> (soc) and the orbital weights (sr) on the k-points of :func:`bandstructure`,
    each (bands, k-points) like ``bs.bands[Spin.up]`` (tmdflow.objects.BandProjections)."""
    from .objects import band_document, projections_of

    store = None if isinstance(result, BandStructureDoc) else _store(settings)
    return projections_of(band_document(store, result, kind))


def dataframe(formula: str | None = None, dimensionality: str | None = None, preset: str | None = None,
              calculator: str | None = None, settings: Settings | None = None):
    """A pandas DataFrame of the material results, one row per result, units in the column
    names (``delta_vb_k_mev``, ``a_angstrom``, ``gap_ev``; tmdflow.objects.material_rows)."""
    from .objects import to_dataframe

    materials = query(formula, dimensionality, preset, settings, calculator)
    return to_dataframe(materials, error_bars(materials, settings))


def error_bars(materials: list[MaterialDocument], settings: Settings | None = None) -> dict[str, dict[str, float]]:
    """material_id -> quantity -> error bar (meV) from the convergence studies in the store that
    apply to each material (ResultsStore.error_bars)."""
    _, conn = _conn(settings, readonly=True)
    return ResultsStore(conn.db).error_bars(materials)


def table1(fmt: str = "markdown", preset: str | None = None, settings: Settings | None = None,
           calculator: str | None = None) -> str:
    materials = query(settings=settings)
    return render(table1_rows(materials, preset, calculator, error_bars(materials, settings)), fmt)


def backup(path: Path, settings: Settings | None = None) -> dict[str, int]:
    """Write every collection to ``path`` (mode 0600, no credential; tmdflow.store.backup)."""
    from .store.backup import export_database, write_backup

    settings, conn = _conn(settings, readonly=True)
    data = export_database(conn.db, settings.db_uri)
    write_backup(Path(path), data)
    return {k: len(v) for k, v in data.items()}


@dataclass
class Restored:
    counts: dict[str, int]  # collection -> documents restored
    previous: Path | None  # the replaced content, kept (pre-restore-<time>.json or <store>.damaged)


def restore(path: Path, settings: Settings | None = None) -> Restored:
    """Replace the database content by a backup, validated whole before anything is touched; the
    replaced content is kept first (tmdflow.store.backup).  Works on a damaged embedded store."""
    from .store.backup import (
        export_database, pre_restore_path, read_backup, replace_content, validate_backup, write_backup,
    )
    from .store.connection import ensure_all_indexes, reset_cache

    settings = settings or load_settings()
    data = read_backup(Path(path))
    summary = validate_backup(data, str(path))  # raises before the store is opened
    emb = embedded_path(settings.db_uri)
    previous: Path | None = None
    if emb is not None and emb.exists():
        try:
            EmbeddedDatabase.open(emb, settings.db_lock_timeout)
        except StoreCorrupted:
            previous = emb.with_name(emb.name + ".damaged")
            emb.replace(previous)  # keep the damaged file for inspection; start from an empty store
            reset_cache()
    conn = connect(settings)
    if previous is None:
        directory = emb.parent if emb is not None else Path("~/.local/share/tmdflow/backups").expanduser()
        previous = pre_restore_path(directory)
        write_backup(previous, export_database(conn.db, settings.db_uri))
    replace_content(conn.db, data)
    ensure_all_indexes(conn)  # FireWorks' and tmdflow's: a restored MongoDB is ready to use
    conn.checkpoint()
    return Restored(summary.counts, previous)


def info(settings: Settings | None = None) -> dict:
    settings, conn = _conn(settings, readonly=True)
    lpad = conn.launchpad
    states = {}
    for fw in lpad.fireworks.find({}, {"state": 1}):
        states[fw["state"]] = states.get(fw["state"], 0) + 1
    return {"database": conn.description, **ResultsStore(conn.db).counts(), "fireworks": states,
            "workflows": lpad.workflows.count_documents({})}


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
