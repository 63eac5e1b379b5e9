"""tmdflow's collections: ``tasks``, ``materials``, ``bandstructures``.

Every document is validated by its pydantic model before it is written; writes are upserts
keyed by a deterministic id, so re-running a workflow updates documents and never duplicates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

from pydantic import ValidationError

from ..errors import InputError
from .documents import (
    BandStructureDoc, ConvergenceDoc, FiguresDoc, MaterialDocument, PhononDoc, TaskDocument, utcnow,
)

TASKS, MATERIALS, BANDS, FIGURES, CONVERGENCE, PHONONS = (
    "tasks", "materials", "bandstructures", "figures", "convergence", "phonons")
INDEXES = {
    TASKS: [("task_id", True), ("formula", False), ("state", False)],
    MATERIALS: [("material_id", True), ("formula", False), ("dimensionality", False), ("preset", False)],
    BANDS: [("bandstructure_id", True)],
    FIGURES: [("material_id", True)],
    CONVERGENCE: [("convergence_id", True), ("formula", False)],
    PHONONS: [("material_id", True)],
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


class ResultsStore:
    def __init__(self, db) -> None:
        self.db = db

    def upsert_task(self, doc: TaskDocument) -> None:
        data = doc.model_dump(mode="json")
        created = data.pop("created_at")
        data["updated_at"] = utcnow().isoformat()
        self.db[TASKS].update_one(
            {"task_id": doc.task_id}, {"$set": data, "$setOnInsert": {"created_at": created}}, upsert=True
        )

    def upsert_material(self, doc: MaterialDocument) -> None:
        data = doc.model_dump(mode="json")
        self.db[MATERIALS].update_one({"material_id": doc.material_id}, {"$set": data}, upsert=True)

    def put_bandstructure(self, doc: BandStructureDoc) -> None:
        self.db[BANDS].update_one(
            {"bandstructure_id": doc.bandstructure_id}, {"$set": doc.model_dump(mode="json")}, upsert=True
        )

    def get_bandstructure(self, bandstructure_id: str) -> BandStructureDoc | None:
        raw = self.db[BANDS].find_one({"bandstructure_id": bandstructure_id})
        return BandStructureDoc.model_validate(_clean(raw)) if raw else None

    def _put_by_material(self, collection: str, doc) -> None:
        self.db[collection].update_one({"material_id": doc.material_id}, {"$set": doc.model_dump(mode="json")},
                                       upsert=True)

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

    def put_convergence(self, doc: ConvergenceDoc) -> None:
        self.db[CONVERGENCE].update_one({"convergence_id": doc.convergence_id},
                                        {"$set": doc.model_dump(mode="json")}, upsert=True)

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
        task = self.task(f"{material.material_id}-bands_soc")
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
        return {c: self.db[c].count_documents({}) for c in (TASKS, MATERIALS, BANDS, FIGURES, CONVERGENCE, PHONONS)}


def export_database(db) -> dict[str, list[dict]]:
    """Every collection of the database (LaunchPad's included), for JSON backup."""
    return {name: list(db[name].find({})) for name in sorted(db.list_collection_names())
            if not name.startswith("system.")}


def import_database(db, data: dict[str, Iterable[dict]]) -> None:
    for name in db.list_collection_names():
        if not name.startswith("system."):
            db[name].drop()
    for name, docs in data.items():
        docs = list(docs)
        if docs:
            db[name].insert_many(docs)
    ensure_indexes(db)
