"""FireWorks at the edge: one generic Firetask that runs a tmdflow step, and workflow building.

The Firetask turns a :class:`tmdflow.steps.StepOutcome` into store writes and an ``FWAction``:
the (relaxed) structure is handed to the children through ``update_spec['tmdflow_handoff']``.
Worker-specific values (pw.x command, MPI launcher, process count, pseudopotential directory,
max_seconds) come from the FireWorker's ``env['tmdflow']`` (``_fw_env`` in the spec), never from
the workflow.
"""

from __future__ import annotations

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

from .errors import InputError, TmdflowError, WalltimeReached
from .presets import load_preset
from .settings import Settings, load_settings
from .identity import readable_prefix, settings_hash, structure_source
from .steps import STEPS, StepRequest, identity_record, resolve_identity, run_step
from .store.connection import Connection, connect, redact  # FireWorker envs are stored: no password
from .store.documents import StructureDoc, TaskDocument
from .store.results import ResultsStore
from .workflow_spec import WorkflowSpec

HANDOFF = "tmdflow_handoff"
#: optional steps that only make sense for a monolayer (bulk 2H: Kramers-degenerate bands;
#: the phonon stage is defined for the layer)
MONOLAYER_ONLY_STEPS = ("soc_map", "phonons")


class TmdflowStepTask(FiretaskBase):
    """Run one tmdflow step (relax, scf_sr, scf_soc, bands_soc, analysis) and store its documents."""

    # explicit module path: FireWorks imports it when deserialising (no USER_PACKAGES needed)
    _fw_name = "{{tmdflow.fireworks.TmdflowStepTask}}"
    required_params = ["workflow", "formula", "dimensionality", "preset", "overrides", "step", "calculator"]
    optional_params = ["restart", "geometry", "source"]

    def run_task(self, fw_spec):
        worker = dict((fw_spec.get("_fw_env") or {}).get("tmdflow", {}))
        max_seconds = worker.pop("max_seconds", None)
        settings = load_settings(**worker)
        handoff = fw_spec.get(HANDOFF) or {}
        request = StepRequest(
            workflow=self["workflow"], formula=self["formula"], dimensionality=self["dimensionality"],
            preset=load_preset(self["preset"], self["overrides"]), step=self["step"],
            calculator=self["calculator"],
            structure=StructureDoc.model_validate(handoff["structure"]) if handoff.get("structure") else None,
            relaxed=bool(handoff.get("relaxed", False)), restart=bool(self.get("restart", False)),
            max_seconds=max_seconds, geometry=self.get("geometry"), source=self.get("source"),
            overrides=dict(self["overrides"] or {}),
        )
        request = resolve_identity(request, settings)  # its id names the failed task below too
        store = ResultsStore(connect(settings).db)
        try:
            outcome = run_step(request, settings, settings.work_dir)
        except WalltimeReached:
            # pw.x stopped cleanly at max_seconds: resume from its checkpoint before the children run
            restart = Firework(
                TmdflowStepTask({**self, "restart": True}),
                spec={k: v for k, v in fw_spec.items() if not k.startswith("_")},
                name=f"{request.task_id}-restart",
            )
            return FWAction(detours=[restart], stored_data={"restart": request.task_id})
        except TmdflowError as exc:
            store.upsert_task(TaskDocument(
                task_id=request.task_id, formula=request.formula, dimensionality=request.dimensionality,
                preset=request.preset.name, step=request.step, calculator=request.calculator,
                state="failed", error=str(exc), host=socket.gethostname(), identity=identity_record(request),
            ))
            raise
        if outcome.task is not None:
            store.upsert_task(outcome.task)
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

    def run_task(self, fw_spec):
        from .convergence import converge, convergence_id, run_pipeline
        from .store.documents import ConvergenceDoc

        worker = dict((fw_spec.get("_fw_env") or {}).get("tmdflow", {}))
        worker.pop("max_seconds", None)
        settings = load_settings(**worker)
        preset = load_preset(self["preset"], self["overrides"])
        root = Path(settings.work_dir) / "convergence" / f"{self['formula']}-{preset.name}"
        result = converge(self["formula"], preset, dict(self["ladders"]),
                          run_pipeline(self["formula"], preset, settings, root), float(self["tolerance_mev"]))
        doc = ConvergenceDoc(convergence_id=convergence_id(self["formula"], preset), formula=self["formula"],
                             base_preset=preset.name, pseudo_family=preset.pseudo_family,
                             element_pseudo_families=dict(preset.element_pseudo_families),
                             spin_orbit_mode=preset.spin_orbit_mode, tolerance_mev=result.tolerance_mev,
                             converged_settings=result.converged_settings, converged=result.converged,
                             error_bars_mev=result.error_bars_mev, values_mev=result.values_mev,
                             points=[{"settings": p.settings, "values": p.values, "wall_seconds": p.wall_seconds}
                                     for p in result.points])
        ResultsStore(connect(settings).db).put_convergence(doc)
        return FWAction(stored_data={"convergence_id": doc.convergence_id, "converged": result.converged})


RANK_STRIDE = 100  # > len(STEPS): a workflow's rank outweighs every step order


def step_priority(step: str, rank: int = 0) -> int:
    """FireWorks runs the READY Firework of highest ``_priority`` first: later steps rank higher,
    so a launcher finishes a material (through its figures) before starting the next one; a
    workflow of higher ``rank`` (``tmdflow priority``) runs before any of lower rank."""
    return rank * RANK_STRIDE + STEPS.index(step)


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
            if step not in STEPS:  # e.g. a convergence task: one Firework, rank alone
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
    relaxed_by = "relax" if "relax" in spec.calculator_steps() else None
    return structure_source(formula, dimensionality, spec.geometry(formula, dimensionality), relaxed_by)


def workflow_key(spec: WorkflowSpec, formula: str, dimensionality: str, preset) -> str:
    """``<workflow>:<formula>-<dim>-<preset>[-<calculator>]@<settings hash>``: a resubmitted file
    is recognised, and a changed override, calculator or structure is a new workflow."""
    digest = settings_hash(spec.calculator, preset, chain_source(spec, formula, dimensionality))
    return f"{spec.name}:{readable_prefix(formula, dimensionality, preset.name, spec.calculator)}@{digest[:10]}"


def build_workflows(spec: WorkflowSpec, preset_name: str | None = None) -> list[Workflow]:
    """One FireWorks Workflow per material x structure, steps chained in order."""
    preset = spec.load_preset(preset_name)
    workflows = []
    if spec.kind == "convergence":
        for formula in spec.materials:
            task = TmdflowConvergenceTask(formula=formula, preset=preset.name, overrides=dict(spec.overrides),
                                          ladders=dict(spec.convergence.ladders),
                                          tolerance_mev=spec.convergence.tolerance_mev)
            key = workflow_key(spec, formula, "monolayer", preset)
            workflows.append(Workflow([Firework(task, name=f"{formula}-monolayer-convergence")], name=key,
                                      metadata={"tmdflow_key": key, "tmdflow_workflow": spec.name, "formula": formula,
                                                "dimensionality": "monolayer", "preset": preset.name,
                                                "overrides": dict(spec.overrides)}))
        return workflows
    for formula in spec.materials:
        for dim in spec.structures:
            fireworks: list[Firework] = []
            for step in spec.calculator_steps():
                if dim == "bulk" and step in MONOLAYER_ONLY_STEPS:
                    continue
                task = TmdflowStepTask(workflow=spec.name, formula=formula, dimensionality=dim, preset=preset.name,
                                       overrides=dict(spec.overrides), step=step, calculator=spec.calculator,
                                       source=chain_source(spec, formula, dim))
                if spec.geometry(formula, dim):
                    task["geometry"] = spec.geometry(formula, dim)  # from the user's structure file
                parents = fireworks[-1:] or None
                fireworks.append(Firework(task, name=f"{formula}-{dim}-{step}", parents=parents,
                                          spec={"_priority": step_priority(step)}))
            key = workflow_key(spec, formula, dim, preset)
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
    structure) through FireWorks' spec pull, so nothing already computed is rerun."""
    names = {f["name"]: f["fw_id"] for f in lpad.fireworks.find({"fw_id": {"$in": doc["nodes"]}}, {"name": 1, "fw_id": 1})}
    ordered = sorted(wf.fws, key=lambda f: STEPS.index(f.tasks[0]["step"]))
    missing = [f for f in ordered if f.name not in names]
    if not missing:
        return []
    present = [f for f in ordered if f.name in names]
    if present and STEPS.index(missing[0].tasks[0]["step"]) < STEPS.index(present[-1].tasks[0]["step"]):
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
    seconds, docs/performance.md).
    """
    lpad = conn.launchpad
    workflows = build_workflows(spec, preset_name)
    keys = [wf.metadata["tmdflow_key"] for wf in workflows]
    existing = {
        doc["metadata"]["tmdflow_key"]: doc
        for doc in lpad.workflows.find({"metadata.tmdflow_key": {"$in": keys}, "state": {"$ne": "ARCHIVED"}},
                                       {"metadata": 1, "nodes": 1, "links": 1})
    }
    new = [wf for wf in workflows if force or wf.metadata["tmdflow_key"] not in existing]
    appended = {} if force else {wf.metadata["tmdflow_key"]: _extend(lpad, existing[wf.metadata["tmdflow_key"]], wf)
                                 for wf in workflows if wf.metadata["tmdflow_key"] in existing}
    if new:
        with _no_progress_bars():
            lpad.bulk_add_wfs(new)  # reassigns fw_ids in place
    added = {wf.metadata["tmdflow_key"]: sorted(wf.id_fw) for wf in new}
    conn.checkpoint()
    return [Submitted(k, added[k], False) if k in added
            else Submitted(k, sorted(existing[k]["nodes"]) + appended.get(k, []), True, appended.get(k, []))
            for k in keys]


def rerun(conn: Connection, fw_ids: list[int]) -> list[int]:
    """Reset completed or failed steps, and every step after them, to run again (e.g. the
    analysis after the analysis code improved: it rereads the bands run, nothing before it is
    recomputed).  A step that is running is refused; nothing is reset unless every id is valid.
    Returns the ids that will run again."""
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


def worker(settings: Settings, max_seconds: float | None = None) -> FWorker:
    env = {"tmdflow": {k: str(v) for k, v in (
        ("pw_command", settings.pw_command), ("bands_command", settings.bands_command),
        ("projwfc_command", settings.projwfc_command),
        ("mpi_command", settings.mpi_command), ("nprocs", settings.nprocs), ("pseudo_dir", settings.pseudo_dir),
        ("work_dir", settings.work_dir.resolve()), ("db_uri", redact(settings.db_uri)), ("db_name", settings.db_name),
    )}}
    if max_seconds:
        env["tmdflow"]["max_seconds"] = max_seconds
    return FWorker(name=socket.gethostname(), env=env)


STOP_FILE = "STOP"


def stop_file(settings: Settings) -> Path:
    """``<work_dir>/STOP``: when it exists, the local launcher stops after the running Firework."""
    return Path(settings.work_dir) / STOP_FILE


def launch_local(conn: Connection, settings: Settings, max_launches: int = 0,
                 progress: Callable[[str], None] | None = None, max_seconds: float | None = None) -> int:
    """Run READY Fireworks one by one in this process, making each completed one durable.

    Stops when none is ready, after ``max_launches``, or when the stop file exists (checked
    between Fireworks; it is removed on the way out, so the next launch runs normally).
    """
    lpad = conn.launchpad
    stop = stop_file(settings)
    fworker = worker(settings, max_seconds)
    launch_root = Path(settings.work_dir) / "launches"
    launch_root.mkdir(parents=True, exist_ok=True)
    n = 0
    cwd = os.getcwd()
    try:
        while lpad.run_exists(fworker) and (not max_launches or n < max_launches):
            if stop.exists():
                stop.unlink()
                if progress:
                    progress(f"stop file {stop} found: stopping; 'tmdflow launch' resumes")
                break
            # the same order as FireWorks' own choice (priority, then creation)
            ready = lpad.fireworks.find_one({"state": "READY"}, {"name": 1, "fw_id": 1},
                                            sort=[("spec._priority", -1), ("created_on", 1)])
            name = ready["name"] if ready else "?"
            if progress:
                progress(f"running {name}")
            start = time.monotonic()
            d = launch_root / time.strftime("%Y%m%d-%H%M%S") / str(n)
            d.mkdir(parents=True, exist_ok=True)
            os.chdir(d)
            with _heartbeat(progress, name, start):
                launch_rocket(lpad, fworker, strm_lvl="ERROR")
            os.chdir(cwd)
            conn.checkpoint()  # every completed Firework is durable before the next starts
            n += 1
            if progress:
                progress(f"{name} finished in {time.monotonic() - start:.0f} s")
    finally:
        os.chdir(cwd)
        conn.checkpoint()
    return n


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


def recover(conn: Connection, expiration_secs: int = 3600) -> list[int]:
    """Mark lost RUNNING Fireworks (no ping for ``expiration_secs``) for rerun; returns their ids."""
    lost_launches, lost_fws, _ = conn.launchpad.detect_lostruns(expiration_secs=expiration_secs, rerun=True)
    conn.checkpoint()
    return list(lost_fws)
