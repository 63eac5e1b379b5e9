"""tmdflow's collections: ``tasks``, ``materials``, ``bandstructures``.

Every document is validated by its pydantic model before it is written; writes are upserts
keyed by a deterministic id, so re-running a workflow updates documents and never duplicates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from pydantic import ValidationError

from ..errors import DocumentTooLarge, InputError, StoreWriteFailed
from ..identity import ID_HASH_LENGTH, readable_prefix
from .documents import (
    BandStructureDoc, CheckpointDoc, ConvergenceDoc, FiguresDoc, MaterialDocument, PhononDoc, TaskDocument, utcnow,
)

TASKS, MATERIALS, BANDS, FIGURES, CONVERGENCE, PHONONS, CHECKPOINTS = (
    "tasks", "materials", "bandstructures", "figures", "convergence", "phonons", "checkpoints")
#: band documents by what they hold (BandStructureDoc.kind): the spin-orbit path, the scalar-relativistic path
SPIN_ORBIT_PATH, SCALAR_PATH = "soc_path", "sr_path"


def step_document_id(material_id: str, step: str) -> str:
    """The id of the task (and band-structure) document a step of a material's run stores."""
    return f"{material_id}-{step}"


def spin_orbit_bands_step() -> str:
    """The step that computes a material's spin-orbit bands (tmdflow.steps.registry: it produces them)."""
    from ..steps import registry

    return registry.producers("spin_orbit_bands")[0]


INDEXES = {
    TASKS: [("task_id", True), ("formula", False), ("state", False)],
    MATERIALS: [("material_id", True), ("formula", False), ("dimensionality", False), ("preset", False)],
    BANDS: [("bandstructure_id", True)],
    FIGURES: [("material_id", True)],
    CONVERGENCE: [("convergence_id", True), ("formula", False)],
    PHONONS: [("material_id", True)],
    CHECKPOINTS: [("checkpoint_id", True), ("task_id", False)],
}


def ensure_indexes(db, unique: bool = True) -> None:
    """Create tmdflow's indexes (idempotent; the embedded store does not persist them).

    ``unique=False`` for the embedded store: mongomock checks a unique index by scanning every
    document on each insert (O(N^2) for a batch; 1000 workflows took 75 s), while uniqueness is
    already guaranteed there by the exclusive lock, FireWorks' atomic id counter and tmdflow's
    upserts on deterministic keys.  On a MongoDB server the indexes are unique.
    """
    for coll, keys in INDEXES.items():
        for key, is_unique in keys:
            db[coll].create_index(key, unique=is_unique and unique)
    db["workflows"].create_index("metadata.tmdflow_key")  # submit's duplicate check


def _clean(doc: dict) -> dict:
    doc.pop("_id", None)
    return doc


@dataclass
class MaterialQuery:
    formula: str | None = None
    dimensionality: str | None = None
    preset: str | None = None
    calculator: str | None = None

    def filter(self) -> dict[str, Any]:
        return {k: v for k, v in (("formula", self.formula), ("dimensionality", self.dimensionality),
                                  ("preset", self.preset), ("calculator", self.calculator)) if v is not None}


#: MongoDB refuses documents above 16 MiB; tmdflow refuses them before the write, with margin
#: for the update operators around them
MAX_DOCUMENT_BYTES = 15 * 1024 * 1024
TIMESTAMP_FIELDS = ("created_at", "updated_at")


def document_data(doc, label: str) -> dict:
    """``doc`` as stored: JSON-compatible values (pydantic's JSON mode), timestamps as
    timezone-aware datetimes (BSON dates; documents stored earlier with ISO strings still load),
    checked against MongoDB's size limit."""
    data = doc.model_dump(mode="json")
    for name in TIMESTAMP_FIELDS:
        value = getattr(doc, name, None)
        if isinstance(value, datetime):
            data[name] = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    check_size(data, label)
    return data


def check_size(data: dict, label: str, limit: int = MAX_DOCUMENT_BYTES) -> None:
    import bson

    size = len(bson.encode(data))
    if size > limit:
        raise DocumentTooLarge(
            f"{label} would be {size / 2**20:.1f} MiB, above the {limit / 2**20:.0f} MiB tmdflow allows "
            f"(MongoDB refuses 16 MiB); nothing was written",
            "use a coarser k path or fewer bands for this material (the eigenvalues dominate the size), "
            "or report it if the document should not be this large",
        )


class ResultsStore:
    def __init__(self, db) -> None:
        self.db = db

    def _upsert(self, collection: str, key: str, doc, on_insert: dict | None = None) -> None:
        data = document_data(doc, f"the {collection} document {key}={getattr(doc, key)!r}")
        update = {"$set": data}
        if on_insert:
            for k in on_insert:
                data.pop(k, None)
            update["$setOnInsert"] = on_insert
        self.db[collection].update_one({key: getattr(doc, key)}, update, upsert=True)

    def upsert_task(self, doc: TaskDocument) -> None:
        created = doc.created_at if doc.created_at.tzinfo else doc.created_at.replace(tzinfo=timezone.utc)
        stamped = doc.model_copy(update={"updated_at": utcnow()})
        self._upsert(TASKS, "task_id", stamped, on_insert={"created_at": created})

    def upsert_material(self, doc: MaterialDocument) -> None:
        self._upsert(MATERIALS, "material_id", doc)

    def put_bandstructure(self, doc: BandStructureDoc) -> None:
        self._upsert(BANDS, "bandstructure_id", doc)

    def get_bandstructure(self, bandstructure_id: str) -> BandStructureDoc | None:
        raw = self.db[BANDS].find_one({"bandstructure_id": bandstructure_id})
        return BandStructureDoc.model_validate(_clean(raw)) if raw else None

    def material_bandstructure(self, material: MaterialDocument, kind: str) -> BandStructureDoc | None:
        """A material's band document of one kind (``SPIN_ORBIT_PATH``, ``SCALAR_PATH``, ``"soc_map"``):
        the one a step of its run stored (``step_document_id``); the spin-orbit path is the one its
        analysis read (``material.bandstructure_id``) when the document names it."""
        if kind == SPIN_ORBIT_PATH and material.bandstructure_id:
            return self.get_bandstructure(material.bandstructure_id)
        from ..steps import registry

        ids = [step_document_id(material.material_id, step) for step in registry.names()]
        raw = self.db[BANDS].find_one({"bandstructure_id": {"$in": ids}, "kind": kind})
        return BandStructureDoc.model_validate(_clean(raw)) if raw else None

    def _put_by_material(self, collection: str, doc) -> None:
        self._upsert(collection, "material_id", doc)

    def _get_by_material(self, collection: str, material_id: str, model):
        raw = self.db[collection].find_one({"material_id": material_id})
        return model.model_validate(_clean(raw)) if raw else None

    def put_figures(self, doc: FiguresDoc) -> None:
        self._put_by_material(FIGURES, doc)

    def figures(self, material_id: str) -> FiguresDoc | None:
        return self._get_by_material(FIGURES, material_id, FiguresDoc)

    def put_phonons(self, doc: PhononDoc) -> None:
        self._put_by_material(PHONONS, doc)

    def phonons(self, material_id: str) -> PhononDoc | None:
        return self._get_by_material(PHONONS, material_id, PhononDoc)

    def put_checkpoint(self, doc: CheckpointDoc) -> None:
        self._upsert(CHECKPOINTS, "checkpoint_id", doc)

    def checkpoint(self, task_id: str, key: str) -> CheckpointDoc | None:
        raw = self.db[CHECKPOINTS].find_one({"checkpoint_id": f"{task_id}:{key}"})
        try:
            return CheckpointDoc.model_validate(_clean(raw)) if raw else None
        except ValidationError:  # damaged: computed again rather than trusted
            return None

    def checkpoints(self, task_id: str | None = None) -> list[CheckpointDoc]:
        """The kept parts (of one task), oldest first; a damaged one is left out, as ``checkpoint``
        leaves it unused."""
        filt = {"task_id": task_id} if task_id else {}
        out = []
        for raw in self.db[CHECKPOINTS].find(filt):
            try:
                out.append(CheckpointDoc.model_validate(_clean(raw)))
            except ValidationError:
                continue
        return sorted(out, key=lambda doc: doc.created_at.timestamp())

    def delete_checkpoints(self, task_id: str) -> int:
        return self.db[CHECKPOINTS].delete_many({"task_id": task_id}).deleted_count

    def put_convergence(self, doc: ConvergenceDoc) -> None:
        self._upsert(CONVERGENCE, "convergence_id", doc)

    def convergence(self) -> list[ConvergenceDoc]:
        return [ConvergenceDoc.model_validate(_clean(d)) for d in self.db[CONVERGENCE].find({})]

    def error_bars(self, materials: Iterable[MaterialDocument]) -> dict[str, dict[str, float]]:
        """material_id -> quantity -> error bar (meV) for the Quantum ESPRESSO monolayers among
        ``materials`` that a convergence study of their formula applies to (same pseudopotential
        family and spin-orbit mode, settings at least the study's converged ones:
        tmdflow.convergence.error_bars_apply); the largest when several apply."""
        from ..convergence import applicable_error_bars
        from ..materials import parse_formula

        studies: dict[str, list[tuple[dict, dict]]] = {}
        for doc in self.convergence():
            studies.setdefault(doc.formula, []).append((doc.study_settings(), doc.error_bars_mev))
        out = {}
        for m in materials:
            if m.calculator != "espresso" or m.dimensionality != "monolayer" or m.formula not in studies:
                continue
            bars = applicable_error_bars(studies[m.formula], self.result_settings(m), parse_formula(m.formula))
            if bars is not None:
                out[m.material_id] = bars
        return out

    def result_settings(self, material: MaterialDocument) -> dict[str, Any]:
        """The preset (with the workflow's overrides) a material's spin-orbit bands ran with, from
        its task document; the named preset when the task has none."""
        task = self.task(step_document_id(material.material_id, spin_orbit_bands_step()))
        if task is not None and (task.inputs or {}).get("preset"):
            return dict(task.inputs["preset"])
        from ..presets import available_presets, load_preset

        return dataclasses.asdict(load_preset(material.preset)) if material.preset in available_presets() else {}

    def task(self, task_id: str) -> TaskDocument | None:
        raw = self.db[TASKS].find_one({"task_id": task_id})
        return TaskDocument.model_validate(_clean(raw)) if raw else None

    def tasks(self, filt: dict | None = None) -> list[TaskDocument]:
        return [TaskDocument.model_validate(_clean(d)) for d in self.db[TASKS].find(filt or {})]

    def materials(self, query: MaterialQuery | None = None) -> list[MaterialDocument]:
        filt = (query or MaterialQuery()).filter()
        out = []
        for raw in self.db[MATERIALS].find(filt).sort([("formula", 1), ("dimensionality", 1)]):
            try:
                out.append(MaterialDocument.model_validate(_clean(raw)))
            except ValidationError as exc:
                raise InputError(f"material document {raw.get('material_id')} does not validate: {exc}",
                                 "re-run its workflow to rewrite it") from None
        return out

    def counts(self) -> dict[str, int]:
        return {c: self.db[c].count_documents({}) for c in (TASKS, MATERIALS, BANDS, FIGURES, CONVERGENCE, PHONONS,
                                                          CHECKPOINTS)}


def parts_of_step(parts: Iterable[CheckpointDoc], formula: str, dimensionality: str, preset_name: str,
                  calculator: str, step: str, settings_hash: str | None) -> list[CheckpointDoc]:
    """Of ``parts`` (ResultsStore.checkpoints(), read once), those a step of a workflow would reuse
    when it runs again (``tmdflow status``): of a task of this material, preset, calculator and
    step, under the same settings hash when both sides record it.  (The task id itself also hashes
    the worker's pseudopotential files, so it is only known where the step runs.)"""
    prefix = readable_prefix(formula, dimensionality, preset_name, calculator) + "-"
    return [doc for doc in parts
            if doc.task_id.startswith(prefix) and doc.task_id.endswith(f"-{step}")
            and len(doc.task_id) == len(prefix) + ID_HASH_LENGTH + len(step) + 1
            and (doc.settings_hash is None or settings_hash is None or doc.settings_hash == settings_hash)]


class TaskCheckpoints:
    """The checkpoints of one step's task in the store (tmdflow.calculators.jobs.Checkpoints):
    what a Firework hands its step so finished parts of a long calculation outlive the run."""

    def __init__(self, store: ResultsStore, task_id: str, durable: Callable[[], None] | None = None,
                 settings_hash: str | None = None) -> None:
        """``durable``: makes the store's content durable (the embedded store's save,
        Connection.checkpoint), called after each put, so a point survives a launcher that dies
        before its Firework ends.  ``settings_hash``: the step's (recorded with each part, for
        ``tmdflow status``)."""
        self.store, self.task_id, self.durable, self.settings_hash = store, task_id, durable, settings_hash

    def get(self, key: str) -> dict | None:
        doc = self.store.checkpoint(self.task_id, key)
        return dict(doc.data) if doc else None

    def put(self, key: str, label: str, data: dict) -> None:
        self.store.put_checkpoint(CheckpointDoc(checkpoint_id=f"{self.task_id}:{key}", task_id=self.task_id,
                                                key=key, label=label, data=data,
                                                settings_hash=self.settings_hash))
        if self.durable is not None:
            try:
                self.durable()
            except (RuntimeError, OSError, StoreWriteFailed):
                # a save that fails now (a concurrent FireWorks ping, a full disk) must not fail
                # the step: the point stays in the store and is saved with the Firework's end
                pass
