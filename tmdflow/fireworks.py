"""FireWorks at the edge: one generic Firetask that runs a tmdflow step, and workflow building.

The Firetask turns a :class:`tmdflow.steps.StepOutcome` into store writes and an ``FWAction``:
the (relaxed) structure is handed to the children through ``update_spec['tmdflow_handoff']``.
Worker-specific values (pw.x command, MPI launcher, process count, pseudopotential directory,
max_seconds) come from the FireWorker's ``env['tmdflow']`` (``_fw_env`` in the spec), never from
the workflow; the database never does (FireWorks stores that env in every launch): a task uses
its launcher's database, or its machine's own settings (:func:`task_settings`).

A chain's preset is pinned when it is submitted: the fully resolved values are stored once, under
their content's hash (tmdflow.store.pinned_presets), and every Firetask carries that hash
(``preset_hash``) and, for a step, the chain's settings hash (``settings_hash``); a step loads the
values by hash and builds its preset from them, not from the preset files, and refuses to run when
the document is missing or altered, or when the values give another identity under the code that
runs it (:func:`pinned_values_of`, :func:`pinned_preset`, :func:`pinned_identity_check`).
Firetasks stored before presets were pinned carry no hash and read the preset files as they are.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fireworks import Firework, FWAction, FWorker, Workflow
from fireworks.core.firework import FiretaskBase
from fireworks.core.rocket_launcher import launch_rocket

from .errors import InputError, TmdflowError
from .presets import PRESET_KEYS, Preset, load_preset
from .settings import Settings, load_settings
from .identity import preset_values, readable_prefix, settings_hash, structure_source
from .restarts import STEP_HANDLERS, Action, Attempt, correction, decide
from .steps import StepRequest, identity_record, resolve_identity, run_step
from .steps import registry as step_registry
from .store.connection import Connection, connect
from .store.documents import StructureDoc, TaskDocument
from .store.pinned_presets import load_pinned, pin_preset, preset_hash
from .store.results import ResultsStore, TaskCheckpoints
from .workflow_spec import WorkflowSpec

HANDOFF = "tmdflow_handoff"


class TmdflowStepTask(FiretaskBase):
    """Run one tmdflow step (relax, scf_sr, scf_soc, bands_soc, analysis) and store its documents."""

    # explicit module path: FireWorks imports it when deserialising (no USER_PACKAGES needed)
    _fw_name = "{{tmdflow.fireworks.TmdflowStepTask}}"
    required_params = ["workflow", "formula", "dimensionality", "preset", "overrides", "step", "calculator"]
    # preset_hash / settings_hash: the preset pinned at submit (pinned_params; neither: submitted
    # before pinning)
    optional_params = ["restart", "geometry", "source", "preset_hash", "settings_hash"]

    def step_request(self, fw_spec, db, max_seconds: float | None = None) -> StepRequest:
        """The step's request: its params, the parent's hand-off in ``fw_spec`` and the preset
        pinned at submit (loaded from ``db``, the store's database, by its hash), checked against
        the chain's settings hash before anything runs (an :class:`InputError` when the pinned
        preset is not in the store or gives another identity under this code)."""
        label = f"{self['formula']}-{self['dimensionality']} step {self['step']}"
        values = pinned_values_of(self, db, label)
        handoff = fw_spec.get(HANDOFF) or {}
        request = StepRequest(
            workflow=self["workflow"], formula=self["formula"], dimensionality=self["dimensionality"],
            preset=pinned_preset(self["preset"], self["overrides"], values), step=self["step"],
            calculator=self["calculator"],
            structure=StructureDoc.model_validate(handoff["structure"]) if handoff.get("structure") else None,
            relaxed=bool(handoff.get("relaxed", False)), restart=bool(self.get("restart", False)),
            max_seconds=max_seconds, geometry=self.get("geometry"), source=self.get("source"),
            overrides=dict(self["overrides"] or {}),
        )
        if values is not None:
            pinned_identity_check(label, values, request.preset, request.calculator,
                                  self.get("settings_hash"), request.settings_digest)
        return request

    def run_task(self, fw_spec):
        settings, max_seconds = task_settings(fw_spec)
        conn = connect(settings)
        db = conn.db
        request = self.step_request(fw_spec, db, max_seconds)  # a missing or changed pinned preset stops here
        request = resolve_identity(request, settings)  # its id names the failed task below too
        store = ResultsStore(db)
        # finished parts of a long step (an Elk E(a) scan's points), saved to disk as each is kept
        kept = TaskCheckpoints(store, request.task_id, durable=conn.checkpoint,
                               settings_hash=request.settings_digest)
        try:
            outcome = run_step(request, settings, settings.work_dir, checkpoints=kept)
        except TmdflowError as exc:
            # the step handlers of tmdflow.restarts, as under 'tmdflow compute'; a resumption (pw.x
            # stopped cleanly at max_seconds) runs in a detour before the children: this launcher's
            # time is spent, the next one resumes from the checkpoint
            attempt = Attempt(1, request.preset, request.restart)
            decision = decide(exc, STEP_HANDLERS, attempt)
            if decision is not None and decision[1].action is Action.RESUME:
                restart = Firework(
                    TmdflowStepTask({**self, "restart": True}),
                    spec={k: v for k, v in fw_spec.items() if not k.startswith("_")},
                    name=f"{request.task_id}-restart",
                )
                record = correction(*decision, attempt)
                return FWAction(detours=[restart], stored_data={"restart": request.task_id,
                                                                "correction": record.model_dump(mode="json")})
            store.upsert_task(TaskDocument(
                task_id=request.task_id, formula=request.formula, dimensionality=request.dimensionality,
                preset=request.preset.name, step=request.step, calculator=request.calculator,
                state="failed", error=str(exc), host=socket.gethostname(), identity=identity_record(request),
            ))
            raise
        if outcome.task is not None:
            store.upsert_task(outcome.task)
            store.delete_checkpoints(request.task_id)  # the task holds the result now
        if outcome.bandstructure is not None:
            store.put_bandstructure(outcome.bandstructure)
        if outcome.material is not None:
            store.upsert_material(outcome.material)
        if outcome.figures is not None:
            store.put_figures(outcome.figures)
        if outcome.phonons is not None:
            store.put_phonons(outcome.phonons)
        return FWAction(
            update_spec={HANDOFF: {"structure": outcome.structure.model_dump(mode="json"), "relaxed": outcome.relaxed}},
            stored_data={"task_id": request.task_id, "corrections": len(outcome.corrections)},
        )


class TmdflowConvergenceTask(FiretaskBase):
    """Run a convergence study of one monolayer (tmdflow.convergence) and store its document."""

    _fw_name = "{{tmdflow.fireworks.TmdflowConvergenceTask}}"
    required_params = ["formula", "preset", "overrides", "ladders", "tolerance_mev"]
    # calculator: espresso when absent (studies submitted before Elk's); preset_hash: the preset
    # pinned at submit (or none: as for TmdflowStepTask)
    optional_params = ["calculator", "preset_hash"]

    def run_task(self, fw_spec):
        from .convergence import converge, convergence_id, run_pipeline
        from .store.documents import ConvergenceDoc

        settings, _ = task_settings(fw_spec)
        db = connect(settings).db
        calculator = self.get("calculator", "espresso")
        label = f"{self['formula']} convergence study"
        values = pinned_values_of(self, db, label)  # before any pw.x run
        preset = pinned_preset(self["preset"], self["overrides"], values)
        if values is not None:
            pinned_identity_check(label, values, preset, calculator)
        tag = f"{self['formula']}-{preset.name}" + ("" if calculator == "espresso" else f"-{calculator}")
        root = Path(settings.work_dir) / "convergence" / tag
        result = converge(self["formula"], preset, dict(self["ladders"]),
                          run_pipeline(self["formula"], preset, settings, root, calculator=calculator),
                          float(self["tolerance_mev"]), calculator=calculator)
        doc = ConvergenceDoc(convergence_id=convergence_id(self["formula"], preset, calculator), formula=self["formula"],
                             base_preset=preset.name, pseudo_family=preset.pseudo_family,
                             element_pseudo_families=dict(preset.element_pseudo_families),
                             spin_orbit_mode=preset.spin_orbit_mode, tolerance_mev=result.tolerance_mev,
                             converged_settings=result.converged_settings, converged=result.converged,
                             error_bars_mev=result.error_bars_mev, values_mev=result.values_mev,
                             points=[{"settings": p.settings, "values": p.values, "wall_seconds": p.wall_seconds}
                                     for p in result.points])
        ResultsStore(db).put_convergence(doc)
        return FWAction(stored_data={"convergence_id": doc.convergence_id, "converged": result.converged})


#: what the error of a chain whose pinned preset no longer holds tells the user to do
_RESUBMIT = ("resubmit the workflow ('tmdflow submit <file>'): a new chain pinned to this tmdflow's presets, run "
             "from its first step (this chain's finished results stay); check first whether the keys named matter "
             "for your results.  'tmdflow rerun' keeps the pinned values: it runs the step only under the tmdflow "
             "version that submitted the chain")


def pinned_params(preset_digest: str, settings_digest: str | None = None) -> dict:
    """The Firetask params that pin a chain's preset at submit: the hash its resolved values are
    stored under (``preset_hash``, tmdflow.store.pinned_presets.preset_hash; :func:`submit` stores
    them) and, for a step, the chain's settings hash."""
    params: dict = {"preset_hash": preset_digest}
    if settings_digest is not None:
        params["settings_hash"] = settings_digest
    return params


def pinned_values_of(task: FiretaskBase, db, label: str) -> dict | None:
    """The resolved preset values a submitted ``task`` is pinned to: loaded from ``db`` by its
    ``preset_hash``, or None (submitted before pinning: the preset files are read).  A pinned
    preset missing from the store, or altered there, is an :class:`InputError` before any work."""
    if task.get("preset_hash") is not None:
        try:
            return load_pinned(db, task["preset_hash"])
        except InputError as exc:
            raise InputError(f"{label}: {exc.problem}", exc.remedy) from None
    return None


def pinned_preset(name: str, overrides: dict | None, values: dict | None) -> Preset:
    """The preset a submitted task runs with: the values pinned at submit, whatever the preset
    files say now (``values`` None: a task stored before presets were pinned reads the files, as
    it always did).  A key this tmdflow has and the pinned values lack (the code gained it since)
    takes the named preset's value of today, a key it no longer has is dropped: whether either
    changes the result is :func:`pinned_identity_check`'s to say.  Pinned values this code's
    Preset refuses are an :class:`InputError` before anything runs."""
    if values is None:
        return load_preset(name, overrides)
    kept = {k: v for k, v in values.items() if k in PRESET_KEYS}
    kept["name"] = name
    new = [k for k in PRESET_KEYS if k not in kept]
    if new:
        try:
            today = dataclasses.asdict(load_preset(name, overrides))
        except InputError as exc:
            raise InputError(f"the preset '{name}' pinned when the workflow was submitted lacks {new}, keys of this "
                             f"tmdflow, and the preset files cannot give them today: {exc.problem}",
                             _RESUBMIT) from None
        kept.update({k: today[k] for k in new})
    try:
        return Preset(**kept)
    except InputError as exc:
        error = InputError(f"the preset '{name}' pinned when the workflow was submitted is not valid under this "
                           f"tmdflow: {exc.problem}", _RESUBMIT)
        error.keys = list(getattr(exc, "keys", []))
        raise error from None


def pinned_differences(values: dict, preset: Preset, calculator: str) -> dict[str, str]:
    """key -> how the pinned ``values`` and the ``preset`` built from them differ, among the keys
    that change ``calculator``'s numbers (tmdflow.identity.preset_values)."""
    submitted, now = preset_values(dict(values), calculator), preset_values(preset, calculator)
    out = {}
    for key in sorted(set(submitted) | set(now)):
        if key not in submitted:
            out[key] = f"{key} (not in the submitted preset; now {now[key]!r})"
        elif key not in now:
            out[key] = f"{key} (submitted {submitted[key]!r}; no longer a preset key)"
        elif submitted[key] != now[key]:
            out[key] = f"{key} (submitted {submitted[key]!r}, now {now[key]!r})"
    return out


def pinned_identity_check(label: str, values: dict, preset: Preset, calculator: str,
                          submitted_hash: str | None = None, current_hash: str | None = None) -> None:
    """Refuse to run ``label`` when the preset built from its pinned ``values`` is not the one
    submitted: a key that changes the calculator's numbers differs (the code changed a key's
    meaning, gained or lost one), or the chain's settings hash does (``submitted_hash`` vs
    ``current_hash``, for steps).  An :class:`InputError` naming the keys, raised before any
    calculation, so no step runs under an identity its chain was not submitted with."""
    differences = pinned_differences(values, preset, calculator)
    hash_changed = submitted_hash is not None and current_hash != submitted_hash
    if not differences and not hash_changed:
        return
    what = "; ".join(differences.values()) or ("no preset key differs: the identity's definition did "
                                               "(tmdflow.identity)")
    hashes = f" (settings hash {submitted_hash[:10]} -> {current_hash[:10]})" if hash_changed else ""
    error = InputError(f"{label}: the preset '{preset.name}' pinned when the workflow was submitted gives another "
                       f"identity under this tmdflow{hashes}: {what}; nothing was run", _RESUBMIT)
    error.keys = list(differences)
    raise error


RANK_STRIDE = 100  # > the number of steps: a workflow's rank outweighs every step order


def step_priority(step: str, rank: int = 0) -> int:
    """FireWorks runs the READY Firework of highest ``_priority`` first: later steps rank higher,
    so a launcher finishes a material (through its figures) before starting the next one; a
    workflow of higher ``rank`` (``tmdflow priority``) runs before any of lower rank."""
    return rank * RANK_STRIDE + step_registry.index(step)


@dataclass
class Reprioritized:
    key: str
    rank: int
    fw_ids: list[int]  # the steps still to run, whose priority changed


def prioritize(conn: Connection, pattern: str, rank: int) -> list[Reprioritized]:
    """Give the workflows whose key matches ``pattern`` (shell-style, e.g. ``'*-monolayer-*'``)
    the ``rank``: their steps not yet run go before those of lower-ranked workflows.  Steps
    completed, running or failed keep their record; the rank is kept in the workflow's metadata
    so steps appended later (``submit`` extending a workflow) get it too."""
    if not -RANK_STRIDE < rank < RANK_STRIDE:
        raise InputError(f"rank {rank} is out of range", f"use an integer between {-RANK_STRIDE + 1} and {RANK_STRIDE - 1}")
    lpad = conn.launchpad
    matched = [doc for doc in lpad.workflows.find({"state": {"$ne": "ARCHIVED"}}, {"metadata": 1, "nodes": 1, "name": 1},
                                                  sort=[("created_on", 1)])
               if fnmatch.fnmatchcase(doc.get("metadata", {}).get("tmdflow_key", doc["name"]), pattern)]
    if not matched:
        keys = [d.get("metadata", {}).get("tmdflow_key", d["name"]) for d in lpad.workflows.find({}, {"metadata": 1, "name": 1})]
        raise InputError(f"no workflow key matches '{pattern}'",
                         f"keys look like {keys[0]!r}; see 'tmdflow status'" if keys else "submit a workflow first")
    out = []
    for doc in matched:
        changed = []
        for fw in lpad.fireworks.find({"fw_id": {"$in": doc["nodes"]}, "state": {"$in": ["WAITING", "READY"]}},
                                      {"fw_id": 1, "spec._tasks": 1}):
            step = fw["spec"]["_tasks"][0].get("step")
            if step not in step_registry.names():  # e.g. a convergence task: one Firework, rank alone
                priority = rank * RANK_STRIDE
            else:
                priority = step_priority(step, rank)
            lpad.fireworks.update_one({"fw_id": fw["fw_id"]}, {"$set": {"spec._priority": priority}})
            changed.append(fw["fw_id"])
        lpad.workflows.update_one({"_id": doc["_id"]}, {"$set": {"metadata.tmdflow_rank": rank}})
        out.append(Reprioritized(doc.get("metadata", {}).get("tmdflow_key", doc["name"]), rank, sorted(changed)))
    conn.checkpoint()
    return out


def chain_source(spec: WorkflowSpec, formula: str, dimensionality: str) -> dict:
    """The structure source of one material's chain (tmdflow.identity)."""
    mover = step_registry.structure_mover()
    relaxed_by = mover if mover in spec.calculator_steps() else None
    return structure_source(formula, dimensionality, spec.geometry(formula, dimensionality), relaxed_by)


def workflow_settings_hashes(spec: WorkflowSpec, preset_name: str | None = None) -> set[str]:
    """The settings hashes of every material a workflow computes (tmdflow.identity): how to find
    its results among others of the same preset."""
    preset = spec.load_preset(preset_name)
    return {settings_hash(spec.calculator, preset, chain_source(spec, formula, dim))
            for formula in spec.materials for dim in spec.structures}


def workflow_key(spec: WorkflowSpec, formula: str, dimensionality: str, preset, digest: str | None = None) -> str:
    """``<workflow>:<formula>-<dim>-<preset>[-<calculator>]@<settings hash>``: a resubmitted file
    is recognised, and a changed override, calculator or structure is a new workflow (``digest``:
    the chain's settings hash when known)."""
    digest = digest or settings_hash(spec.calculator, preset, chain_source(spec, formula, dimensionality))
    return f"{spec.name}:{readable_prefix(formula, dimensionality, preset.name, spec.calculator)}@{digest[:10]}"


def build_workflows(spec: WorkflowSpec, preset_name: str | None = None) -> list[Workflow]:
    """One FireWorks Workflow per material x structure, steps chained in order, pinned to the
    preset as it resolves now (:func:`workflows_for`)."""
    return workflows_for(spec, spec.load_preset(preset_name))


def workflows_for(spec: WorkflowSpec, preset: Preset) -> list[Workflow]:
    """The Workflows of ``spec`` pinned to ``preset`` (its hash in every Firetask: the values
    themselves must be stored with :func:`tmdflow.store.pinned_presets.pin_preset`)."""
    workflows = []
    preset_digest = preset_hash(dataclasses.asdict(preset))  # one preset, one hash for every Firetask
    if spec.kind == "convergence":
        for formula in spec.materials:
            task = TmdflowConvergenceTask(formula=formula, preset=preset.name, overrides=dict(spec.overrides),
                                          ladders=dict(spec.convergence.ladders),
                                          tolerance_mev=spec.convergence.tolerance_mev, calculator=spec.calculator,
                                          **pinned_params(preset_digest))
            key = workflow_key(spec, formula, "monolayer", preset)
            workflows.append(Workflow([Firework(task, name=f"{formula}-monolayer-convergence")], name=key,
                                      metadata={"tmdflow_key": key, "tmdflow_workflow": spec.name, "formula": formula,
                                                "dimensionality": "monolayer", "preset": preset.name,
                                                "overrides": dict(spec.overrides)}))
        return workflows
    for formula in spec.materials:
        for dim in spec.structures:
            fireworks: list[Firework] = []
            source = chain_source(spec, formula, dim)  # one chain, one structure source and settings hash
            digest = settings_hash(spec.calculator, preset, source)
            for step in spec.calculator_steps():
                if dim not in step_registry.spec(step).dimensionalities:  # e.g. soc_map, phonons: monolayers
                    continue
                task = TmdflowStepTask(workflow=spec.name, formula=formula, dimensionality=dim, preset=preset.name,
                                       overrides=dict(spec.overrides), step=step, calculator=spec.calculator,
                                       source=source, **pinned_params(preset_digest, digest))
                if spec.geometry(formula, dim):
                    task["geometry"] = spec.geometry(formula, dim)  # from the user's structure file
                parents = fireworks[-1:] or None
                fireworks.append(Firework(task, name=f"{formula}-{dim}-{step}", parents=parents,
                                          spec={"_priority": step_priority(step)}))
            key = workflow_key(spec, formula, dim, preset, digest)
            workflows.append(Workflow(fireworks, name=key, metadata={
                "tmdflow_key": key, "tmdflow_workflow": spec.name, "formula": formula,
                "dimensionality": dim, "preset": preset.name, "overrides": dict(spec.overrides)}))
    return workflows


@dataclass
class Submitted:
    key: str
    fw_ids: list[int]
    skipped: bool
    appended: list[int] = field(default_factory=list)  # steps added to an existing workflow


@contextmanager
def _no_progress_bars():
    """FireWorks' bulk insert wraps its loop in tqdm (reading TQDM_* only at import): pass the
    iterable through unchanged while it runs, so tmdflow's output stays clean."""
    import fireworks.core.launchpad as fw_launchpad

    original = fw_launchpad.tqdm
    fw_launchpad.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        fw_launchpad.tqdm = original


def _extend(lpad, doc: dict, wf: Workflow) -> list[int]:
    """Append to an already submitted workflow the steps the spec has and it lacks.

    Only steps after the existing ones may be added (e.g. the figure steps after 'analysis'):
    they are chained after the workflow's last step and receive its hand-off (the relaxed
    structure) through FireWorks' spec pull, so nothing already computed is rerun.  The added
    steps are pinned to the preset as resolved now, which has the workflow's settings hash (it is
    in the key that matched)."""
    names = {f["name"]: f["fw_id"] for f in lpad.fireworks.find({"fw_id": {"$in": doc["nodes"]}}, {"name": 1, "fw_id": 1})}
    ordered = sorted(wf.fws, key=lambda f: step_registry.index(f.tasks[0]["step"]))
    missing = [f for f in ordered if f.name not in names]
    if not missing:
        return []
    present = [f for f in ordered if f.name in names]
    if present and step_registry.index(missing[0].tasks[0]["step"]) < step_registry.index(present[-1].tasks[0]["step"]):
        raise InputError(
            f"workflow {doc['metadata']['tmdflow_key']} was submitted without step "
            f"'{missing[0].tasks[0]['step']}', which would have to run before steps already there",
            "only later steps can be added to a submitted workflow; use --force for a new one",
        )
    fresh: list[Firework] = []
    rank = doc["metadata"].get("tmdflow_rank", 0)
    for f in missing:
        fresh.append(Firework(f.tasks, name=f.name, parents=fresh[-1:] or None,
                              spec={"_priority": step_priority(f.tasks[0]["step"], rank)}))
    leaves = [int(n) for n in doc["nodes"] if not doc["links"].get(str(n))]
    lpad.append_wf(Workflow(fresh), leaves, pull_spec_mods=True)
    return sorted(f.fw_id for f in fresh)


def submit(conn: Connection, spec: WorkflowSpec, preset_name: str | None = None, force: bool = False) -> list[Submitted]:
    """Add the workflows to the LaunchPad.  A key already submitted is skipped unless ``force``,
    or extended when the spec has steps it lacks (e.g. figures added later to a finished study).

    One query finds the existing keys and one bulk insert adds the rest (1000 workflows in
    seconds, docs/performance.md).  The preset is stored first, once, under the hash every
    Firetask carries (tmdflow.store.pinned_presets), also when every key is already submitted:
    a submission restores a pinned preset lost from the store.
    """
    lpad = conn.launchpad
    preset = spec.load_preset(preset_name)
    workflows = workflows_for(spec, preset)
    pin_preset(conn.db, dataclasses.asdict(preset))
    keys = [wf.metadata["tmdflow_key"] for wf in workflows]
    existing = {
        doc["metadata"]["tmdflow_key"]: doc
        for doc in lpad.workflows.find({"metadata.tmdflow_key": {"$in": keys}, "state": {"$ne": "ARCHIVED"}},
                                       {"metadata": 1, "nodes": 1, "links": 1})
    }
    new = [wf for wf in workflows if force or wf.metadata["tmdflow_key"] not in existing]
    appended = {} if force else {wf.metadata["tmdflow_key"]: _extend(lpad, existing[wf.metadata["tmdflow_key"]], wf)
                                 for wf in workflows if wf.metadata["tmdflow_key"] in existing}
    claimed: tuple = ()
    if new and conn.embedded is None:  # MongoDB: claim the keys atomically (store/submissions.py)
        from .store import submissions

        gens = submissions.generations(lpad.workflows, [wf.metadata["tmdflow_key"] for wf in new])
        won, lost = submissions.claim(conn.db, list(gens), gens)
        if lost:  # another process submitted them this very moment: report its workflows
            existing.update(submissions.wait_for_winner(lpad.workflows, conn.db, lost, gens))
            new = [wf for wf in new if wf.metadata["tmdflow_key"] in won]
        claimed = (conn.db, won, gens)
    if new:
        try:
            with _no_progress_bars():
                lpad.bulk_add_wfs(new)  # reassigns fw_ids in place
        except BaseException:
            if claimed:
                submissions.release(*claimed)
            raise
    if claimed:
        submissions.settle(*claimed)
    added = {wf.metadata["tmdflow_key"]: sorted(wf.id_fw) for wf in new}
    conn.checkpoint()
    return [Submitted(k, added[k], False) if k in added
            else Submitted(k, sorted(existing[k]["nodes"]) + appended.get(k, []), True, appended.get(k, []))
            for k in keys]


def rerun(conn: Connection, fw_ids: list[int]) -> list[int]:
    """Reset completed or failed steps, and every step after them, to run again (e.g. the
    analysis after the analysis code improved: it rereads the bands run, nothing before it is
    recomputed).  A step that is running is refused; nothing is reset unless every id is valid.
    The steps keep the preset pinned at submit (a preset file edited since changes nothing:
    resubmit the workflow for that).  Returns the ids that will run again."""
    lpad = conn.launchpad
    found = {fw["fw_id"]: fw for fw in lpad.fireworks.find({"fw_id": {"$in": list(fw_ids)}}, {"fw_id": 1, "state": 1, "name": 1})}
    missing = sorted(set(fw_ids) - set(found))
    if missing:
        raise InputError(f"no step with fw_id {missing}", "see the fw_ids in 'tmdflow status'")
    busy = [f"{fw['fw_id']} ({fw['name']})" for fw in found.values() if fw["state"] in ("RUNNING", "RESERVED")]
    if busy:
        raise InputError(f"step(s) {', '.join(busy)} are running",
                         "wait for them to finish, or 'tmdflow launch --recover' if their launcher died")
    reset: set[int] = set()
    for fw_id in sorted(fw_ids):
        lpad.rerun_fw(fw_id)  # FireWorks resets the step's descendants too; it returns only the step
        reset |= {fw_id} | _descendants(lpad, fw_id)
    conn.checkpoint()
    return sorted(reset)


def _descendants(lpad, fw_id: int) -> set[int]:
    links = lpad.workflows.find_one({"nodes": fw_id}, {"links": 1})["links"]
    out: set[int] = set()
    todo = [fw_id]
    while todo:
        for child in links.get(str(todo.pop()), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


#: settings of the FireWorker env (``worker``); the database is never among them (a FireWorker env
#: is stored in every launch document and FW.json): a task reads it from its launcher or its own settings
WORKER_SETTINGS = ("pw_command", "bands_command", "projwfc_command", "pw2wannier90_command", "wannier90_command",
                   "mpi_command", "nprocs", "pseudo_dir", "work_dir")
_LAUNCHER_DB: dict[str, str] = {}  # db_uri/db_name of the launcher running in this process


def task_settings(fw_spec) -> tuple[Settings, float | None]:
    """A Firetask's settings: the machine side from the FireWorker env, the database from the
    launcher in this process (or, under another launcher, this machine's own settings:
    TMDFLOW_DB_URI / ~/.tmdflow.yaml), and the max_seconds the launcher gave it."""
    env = dict((fw_spec.get("_fw_env") or {}).get("tmdflow", {}))
    max_seconds = env.get("max_seconds")
    values = {k: v for k, v in env.items() if k in WORKER_SETTINGS}
    return load_settings(**values, **_LAUNCHER_DB), float(max_seconds) if max_seconds else None


def worker(settings: Settings, max_seconds: float | None = None) -> FWorker:
    env = {"tmdflow": {k: str(getattr(settings, k) if k != "work_dir" else settings.work_dir.resolve())
                       for k in WORKER_SETTINGS}}
    # who runs it: `tmdflow launch --recover` and `status` recognise a run whose launcher is gone
    env["tmdflow"]["launcher_host"] = socket.gethostname()
    env["tmdflow"]["launcher_pid"] = os.getpid()
    if max_seconds:
        env["tmdflow"]["max_seconds"] = max_seconds
    return FWorker(name=socket.gethostname(), env=env)


STOP_FILE = "STOP"
#: a launcher with a time budget starts no Firework with less than this left (half the budget
#: for budgets under two minutes): a pw.x started with seconds left would stop before its first
#: SCF iteration (MaxSecondsTooShort)
MIN_STEP_SECONDS = 60.0
INTERRUPTIONS = "_tmdflow_interruptions"  # spec key: the record of each interrupted or lost run


def stop_file(settings: Settings) -> Path:
    """``<work_dir>/STOP``: when it exists, the local launcher stops after the running Firework."""
    return Path(settings.work_dir) / STOP_FILE


@dataclass
class LaunchResult:
    launched: int = 0
    fizzled: list[tuple[int, str, str | None]] = field(default_factory=list)  # fw_id, name, reason
    interrupted: int | None = None  # the signal that stopped the launcher
    out_of_time: bool = False  # stopped starting Fireworks: the time budget is spent
    requeued: list[int] = field(default_factory=list)  # interrupted Fireworks left READY

    @property
    def max_seconds_too_short(self) -> bool:
        return any(reason and reason.startswith("tmdflow.errors.MaxSecondsTooShort") for _, _, reason in self.fizzled)


def _fizzle_reason(lpad, fw_id: int) -> str | None:
    launch = lpad.launches.find_one({"fw_id": fw_id}, sort=[("launch_id", -1)])
    exc = (((launch or {}).get("action") or {}).get("stored_data") or {}).get("_exception") or {}
    trace = (exc.get("_stacktrace") or "").strip().splitlines()
    return next((line.strip() for line in reversed(trace) if line.strip() and not line.startswith(" ")), None)


def _requeue(lpad, fw_id: int, record: dict) -> None:
    """Leave a Firework whose run was interrupted or lost READY, with the interruption recorded
    (its launch is archived by FireWorks)."""
    lpad.rerun_fw(fw_id)
    lpad.fireworks.update_one({"fw_id": fw_id}, {"$push": {f"spec.{INTERRUPTIONS}": record}})


@contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM ask the launcher to stop (tmdflow.processes): the running program is stopped,
    its Firework left READY, and the launcher exits with 128 + the signal."""
    import signal

    from . import processes

    processes.reset_stop()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, processes.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_local(conn: Connection, settings: Settings, max_launches: int = 0,
                 progress: Callable[[str], None] | None = None, max_seconds: float | None = None) -> LaunchResult:
    """Run READY Fireworks one by one in this process, making each completed one durable.

    Stops when none is ready, after ``max_launches``, when the stop file exists (checked between
    Fireworks; it is removed on the way out, so the next launch runs normally), on SIGINT/SIGTERM
    (the running program is stopped and its Firework left READY), or, with ``max_seconds`` (a
    queue job's walltime minus its margin), when too little time is left to start one.  Each
    Firework gets the time left as its max_seconds.
    """
    from . import processes

    lpad = conn.launchpad
    stop = stop_file(settings)
    deadline = time.time() + max_seconds if max_seconds else None
    min_left = min(MIN_STEP_SECONDS, max_seconds / 2) if max_seconds else 0.0
    launch_root = (Path(settings.work_dir) / "launches").resolve()  # absolute: the launcher chdirs
    launch_root.mkdir(parents=True, exist_ok=True)
    result = LaunchResult()
    taken: set[int] = set()
    cwd = os.getcwd()
    _LAUNCHER_DB.update(db_uri=settings.db_uri, db_name=settings.db_name)
    processes.set_budget(max_seconds)  # every program gets the time left (tmdflow.processes)
    try:
        with _stop_on_signals(), fireworks_logs_to_stderr():
            while not max_launches or result.launched < max_launches:
                if processes.stop_requested():
                    result.interrupted = processes.stop_requested()
                    break
                if stop.exists():
                    stop.unlink()
                    if progress:
                        progress(f"stop file {stop} found: stopping; 'tmdflow launch' resumes")
                    break
                # the same order as FireWorks' own choice (priority, then creation)
                ready = lpad.fireworks.find_one({"state": "READY"}, {"name": 1, "fw_id": 1},
                                                sort=[("spec._priority", -1), ("created_on", 1)])
                if ready is None:
                    break
                left = deadline - time.time() if deadline else None
                if left is not None and left < min_left:
                    result.out_of_time = True
                    if progress:
                        progress(f"{left:.0f} s of --max-seconds left (< {min_left:.0f} s): not starting "
                                 f"{ready['name']}; the next launch runs it")
                    break
                name, fw_id = ready["name"], ready["fw_id"]
                if progress:
                    progress(f"running {name}")
                start = time.monotonic()
                d = launch_root / time.strftime("%Y%m%d-%H%M%S") / str(result.launched)
                d.mkdir(parents=True, exist_ok=True)
                fworker = worker(settings, left)  # before the chdir: a relative work_dir is resolved here
                os.chdir(d)
                with _heartbeat(progress, name, start), open(d / "FW_error.log", "w") as err:
                    # FireWorks writes a failed task's traceback there; the user gets its last line
                    ran = launch_rocket(lpad, fworker, fw_id=fw_id, strm_lvl="ERROR", err_file=err)
                os.chdir(cwd)
                if not ran and not processes.stop_requested():  # another launcher took it first (MongoDB)
                    if fw_id in taken:
                        break  # READY but not checked out twice: leave it to FireWorks' tools
                    taken.add(fw_id)
                    continue
                doc = lpad.fireworks.find_one({"fw_id": fw_id}, {"state": 1}) or {}
                signum = processes.stop_requested()
                if signum and doc.get("state") in ("FIZZLED", "RUNNING", "RESERVED"):
                    import signal

                    _requeue(lpad, fw_id, {"signal": signal.Signals(signum).name, "host": socket.gethostname(),
                                           "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "launcher_pid": os.getpid()})
                    result.requeued.append(fw_id)
                    result.interrupted = signum
                    conn.checkpoint()
                    if progress:
                        progress(f"{name} interrupted by {signal.Signals(signum).name}: its programs were stopped "
                                 "and it stays READY; 'tmdflow launch' runs it again")
                    break
                if doc.get("state") == "FIZZLED":
                    reason = _fizzle_reason(lpad, fw_id)
                    result.fizzled.append((fw_id, name, reason))
                    if progress:
                        progress(f"{name} FAILED: {reason or 'see tmdflow status'} (traceback: {d / 'FW_error.log'})")
                conn.checkpoint()  # every completed Firework is durable before the next starts
                result.launched += 1
                if progress:
                    progress(f"{name} finished in {time.monotonic() - start:.0f} s")
    finally:
        processes.set_budget(None)
        _LAUNCHER_DB.clear()
        os.chdir(cwd)
        conn.checkpoint()
    return result


@contextmanager
def fireworks_logs_to_stderr():
    """FireWorks' loggers write to stdout (fw_utilities.get_fw_logger); stdout is for tmdflow's
    tables and JSON, so they write to stderr while this is active, and loggers made before are
    moved.  The Rocket's INFO lines (which repeat tmdflow's progress) are left out."""
    import logging
    import sys

    import fireworks.utilities.fw_utilities as fw_utilities

    def move(logger) -> None:
        for h in getattr(logger, "handlers", []):
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout:
                h.setStream(sys.stderr)

    original = fw_utilities.get_fw_logger
    patched_modules = []

    def get_fw_logger(*args, **kwargs):
        logger = original(*args, **kwargs)
        move(logger)
        return logger

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("fireworks") and getattr(module, "get_fw_logger", None) is original:
            module.get_fw_logger = get_fw_logger
            patched_modules.append(module)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        move(logger)
    import fireworks.core.rocket as rocket

    level = rocket.ROCKET_STREAM_LOGLEVEL
    rocket.ROCKET_STREAM_LOGLEVEL = "WARNING"  # its INFO lines repeat tmdflow's progress lines
    try:
        yield
    finally:
        rocket.ROCKET_STREAM_LOGLEVEL = level
        for module in patched_modules:
            module.get_fw_logger = original


@contextmanager
def _heartbeat(progress: Callable[[str], None] | None, name: str, start: float, every: float = 1.0):
    """Report '<material step> <elapsed> s' while a Firework runs (the Progress sink throttles)."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            progress(f"{name} {time.monotonic() - start:6.0f} s")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _launcher_gone(launch: dict) -> str | None:
    """Why a RUNNING launch is lost, if its launcher ran on this host and is no longer alive."""
    env = ((launch.get("fworker") or {}).get("env") or {}).get("tmdflow") or {}
    host, pid = env.get("launcher_host"), env.get("launcher_pid")
    if host != socket.gethostname() or not pid:
        return None
    pid = int(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = None
    if pid == os.getpid() or (cmdline is not None and "tmdflow" in cmdline):
        return None
    return f"its launcher (pid {pid} on {host}) is gone"


def lost_runs(conn: Connection) -> dict[int, str]:
    """RUNNING Fireworks whose launcher ran on this host and is gone: {fw_id: why}."""
    lpad = conn.launchpad
    out = {}
    for fw in lpad.fireworks.find({"state": "RUNNING"}, {"fw_id": 1}):
        launch = lpad.launches.find_one({"fw_id": fw["fw_id"], "state": "RUNNING"}, sort=[("launch_id", -1)])
        why = _launcher_gone(launch) if launch else None
        if why:
            out[fw["fw_id"]] = why
    return out


def recover(conn: Connection, expiration_secs: int = 3600) -> list[int]:
    """Leave lost RUNNING Fireworks READY to run again; returns their ids.  Lost: its launcher ran on
    this host and its pid is gone (found at once), or no ping for ``expiration_secs`` (FireWorks'
    detect_lostruns: other hosts, where a pid cannot be checked)."""
    lpad = conn.launchpad
    here = lost_runs(conn)
    for fw_id, why in here.items():
        _requeue(lpad, fw_id, {"lost": why, "host": socket.gethostname(), "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    _, lost_fws, _ = lpad.detect_lostruns(expiration_secs=expiration_secs, rerun=True)
    conn.checkpoint()
    return sorted(set(here) | set(lost_fws))


def rerun_failed(conn: Connection, fw_ids: list[int]) -> list[int]:
    """Reset the FIZZLED steps among ``fw_ids`` (FireWorks resets the steps after them too) to run
    on the next launch: ``tmdflow run`` retrying what failed last time (e.g. an interrupted
    ``make run``).  Returns the ids of the failed steps; the caller checkpoints."""
    lpad = conn.launchpad
    failed = [fw["fw_id"] for fw in lpad.fireworks.find({"fw_id": {"$in": list(fw_ids)}, "state": "FIZZLED"},
                                                       {"fw_id": 1})]
    for fw_id in failed:
        lpad.rerun_fw(fw_id)
    return failed
