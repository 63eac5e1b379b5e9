"""Result identity: what makes two results the same (docs/architecture.md, "Result identity").

Two runs share a task document, a material document and a run directory only when everything
that changes their numbers is the same:

* the calculator (espresso, wien2k, ...);
* the effective preset: every resolved setting after the workflow's overrides that the
  calculator reads (not the preset's name or description, nor the keys of other codes such as
  ``wien2k_*`` / ``elk_*``, which change none of its numbers);
* the structure source: the starting geometry's numbers (inputs/materials.yaml, a user's
  structure file, or the structure ``tmdflow compute`` was given) and whether a relax step of
  the same chain moved it;
* the pseudopotential files, by SHA-256 (known only where the step runs: a worker with its own
  ``user_pseudo_dir`` computes other numbers than one with the generated files).

The first three make the **settings hash**, known when a workflow is submitted: it keys the
submission (``fireworks.workflow_key``), so resubmitting the same file is idempotent and changing
an override is a new workflow.  The settings hash plus the pseudopotential files make the
**result hash**, computed where the step runs: it keys what is stored (``material_key``) and
where it runs (``<work_dir>/<material key>/``).  Documents written before identities existed
(no hash in their id) are read as they are and shown as legacy.

Plain functions, no database, no FireWorks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

#: raise when the hashed content changes meaning, so old and new hashes never collide
IDENTITY_VERSION = 1
#: hex digits of the hash kept in ids (40 bits: a collision needs ~10^6 settings per material)
ID_HASH_LENGTH = 10
#: preset fields that change no number
_NOT_HASHED = ("name", "description")
#: geometry keys that define a structure (lengths in Angstrom, z in units of c)
_GEOMETRY_KEYS = ("a", "d", "c", "z")
#: the Elk relaxation's E(d) keys: hashed only when it runs (elk_relax_height: energy)
_ELK_HEIGHT_KEYS = ("elk_relax_height", "elk_height_step", "elk_height_epsengy")


def canonical_json(value: Any) -> str:
    """A stable text form: sorted keys, no white space, floats as Python's shortest repr."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def content_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``: the hashes below, and the key of a document
    stored under its content (the presets pinned at submit, tmdflow.store.pinned_presets)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def preset_values(preset: Any, calculator: str | None = None) -> dict[str, Any]:
    """Every resolved setting of a preset that can change ``calculator``'s numbers, as plain data
    (a dataclass or a pydantic model): the keys of other codes (``wien2k_*``, ``elk_*``, ...)
    are left out, so adding a key for one code leaves the other codes' identities as they were."""
    if dataclasses.is_dataclass(preset):
        values = dataclasses.asdict(preset)
    elif hasattr(preset, "model_dump"):
        values = preset.model_dump(mode="json")
    else:
        values = dict(preset)
    others: tuple[str, ...] = ()
    if calculator is not None:
        from .calculators.base import registered_calculators  # names only: imports no adapter

        others = tuple(f"{code}_" for code in registered_calculators() if code != calculator)
    if not values.get("map_wannier_grid"):  # no Wannier model: its keys change nothing (and identities
        values = {k: v for k, v in values.items() if not k.startswith("map_wannier_")}  # stay those of before them)
    if values.get("elk_relax_height", "forces") == "forces":  # no E(d) refinement: its keys change nothing
        values = {k: v for k, v in values.items() if k not in _ELK_HEIGHT_KEYS}  # (identities as before them)
    return {k: v for k, v in values.items() if k not in _NOT_HASHED and not (others and k.startswith(others))}


def geometry_numbers(geometry: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The numbers of a starting geometry (a user's file: its a, d or a, c, z; not its path)."""
    if not geometry:
        return None
    return {k: float(geometry[k]) for k in _GEOMETRY_KEYS if geometry.get(k) is not None}


def structure_source(formula: str, dimensionality: str, geometry: Mapping[str, Any] | None,
                     relaxed_by: str | None) -> dict[str, Any]:
    """Where a chain's structure comes from: a user's geometry, or inputs/materials.yaml (its
    numbers, so that editing the table makes new results), and the step that relaxed it."""
    numbers = geometry_numbers(geometry)
    if numbers is not None:
        start: dict[str, Any] = {"kind": "file", **numbers}
    else:
        from .materials import get_material

        m = get_material(formula)
        params = m.monolayer if dimensionality == "monolayer" else m.bulk
        start = {"kind": "materials.yaml", **({k: getattr(params, k) for k in _GEOMETRY_KEYS if hasattr(params, k)}
                                              if params is not None else {})}
    return {"start": start, "relaxed_by": relaxed_by}


def given_structure_source(structure: Mapping[str, Any]) -> dict[str, Any]:
    """The source of a structure given whole (``tmdflow compute``): its cell and positions,
    rounded to 1e-6 Angstrom so that a re-built identical cell hashes the same."""
    def rounded(rows):
        return [[round(float(x), 6) for x in row] for row in rows]

    return {"start": {"kind": "given", "symbols": list(structure["symbols"]),
                      "cell": rounded(structure["cell_angstrom"]),
                      "positions": rounded(structure["positions_angstrom"])},
            "relaxed_by": None}


def settings_hash(calculator: str, preset: Any, source: Mapping[str, Any]) -> str:
    """SHA-256 of what a submission fixes: calculator, resolved preset, structure source."""
    return content_hash({"version": IDENTITY_VERSION, "calculator": calculator,
                         "preset": preset_values(preset, calculator), "structure": dict(source)})


def result_hash(settings_digest: str, pseudopotentials: Mapping[str, list[str]]) -> str:
    """SHA-256 of a result's inputs: the settings hash and the pseudopotential files' SHA-256
    (element -> sorted hashes of every file the chain uses; empty for all-electron codes)."""
    return content_hash({"version": IDENTITY_VERSION, "settings": settings_digest,
                         "pseudopotentials": {el: sorted(v) for el, v in pseudopotentials.items()}})


def readable_prefix(formula: str, dimensionality: str, preset_name: str, calculator: str) -> str:
    base = f"{formula}-{dimensionality}-{preset_name}"
    return base if calculator == "espresso" else f"{base}-{calculator}"


def material_key(formula: str, dimensionality: str, preset_name: str, calculator: str, digest: str) -> str:
    """``<formula>-<dim>-<preset>[-<calculator>]-<hash>``: readable, and unique per result."""
    return f"{readable_prefix(formula, dimensionality, preset_name, calculator)}-{digest[:ID_HASH_LENGTH]}"


def is_legacy_id(material_id: str) -> bool:
    """An id written before identities existed: no hash at its end."""
    tail = material_id.rsplit("-", 1)[-1]
    return not (len(tail) == ID_HASH_LENGTH and all(c in "0123456789abcdef" for c in tail))


def describe_overrides(overrides: Mapping[str, Any] | None) -> str:
    """``kmesh=6, ecutwfc=60`` (or ``-`` for none): how a result differs from its named preset."""
    if not overrides:
        return "-"
    return ", ".join(f"{k}={overrides[k]}" for k in sorted(overrides))
