"""Workflow/store figures: submit 1008 workflows, query 10 000 material documents, and the
orchestration overhead per step versus the external programs' own run time.

    .venv/bin/python bench/bench_store.py [--overhead-from STORE.json] [--submit-only]

Runs on a temporary embedded store (the default back end); results go to docs/performance.md.
Targets (issue): submit 1000 < 10 s; query by formula over 10 000 documents < 100 ms;
orchestration overhead <= 2 % of the pw.x time per step.

The submit line says where its time goes: building the Workflows (tmdflow.fireworks.workflows_for,
build_workflows in older versions), FireWorks' bulk insert, the embedded store's checkpoint after
each ``submit`` call (an atomic dump of the whole store), and the rest (the duplicate check,
storing the pinned preset), with the CPU time, the store's size at the end and what one more
checkpoint of it costs.  It measures whichever tmdflow is first on ``sys.path``: with
``PYTHONPATH=<an unpacked commit>:.`` (``git archive <commit> tmdflow inputs``) two versions
compare on the same machine state.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bson.json_util

import tmdflow.fireworks as tmdflow_fireworks
from tmdflow.fireworks import submit
from tmdflow.settings import load_settings
from tmdflow.store.connection import connect
from tmdflow.store.results import MaterialQuery, ResultsStore
from tmdflow.workflow_spec import WorkflowSpec

MATERIALS = ["MoS2", "MoSe2", "WS2", "WSe2", "MoTe2", "WTe2", "CrS2", "CrSe2", "CrTe2"]


@dataclass
class SubmitTimes:
    workflows: int
    fireworks: int
    calls: int
    seconds: float  # the ``submit`` calls, end to end
    cpu_seconds: float  # this process's CPU time in them (what an idle machine would take, about)
    build_seconds: float  # of which building the Workflows
    insert_seconds: float  # FireWorks' bulk_add_wfs
    checkpoint_seconds: float  # the embedded store's atomic saves
    store_bytes: int  # the store file after the last checkpoint
    last_checkpoint_seconds: float  # one more checkpoint of the final store (what one large submit would pay)

    def line(self) -> str:
        rest = self.seconds - self.build_seconds - self.insert_seconds - self.checkpoint_seconds
        return (f"submit: {self.workflows} workflows ({self.fireworks} Fireworks, {self.calls} submit calls) in "
                f"{self.seconds:.2f} s ({1000 * self.seconds / self.workflows:.1f} ms/workflow, CPU "
                f"{self.cpu_seconds:.2f} s): build "
                f"{self.build_seconds:.2f} s, insert {self.insert_seconds:.2f} s, checkpoints "
                f"{self.checkpoint_seconds:.2f} s, rest {rest:.2f} s; store {self.store_bytes / 1e6:.1f} MB, "
                f"one checkpoint of it {self.last_checkpoint_seconds:.2f} s")


@contextmanager
def timed(owner, name: str, totals: dict[str, float]):
    """Add the time spent in ``owner.name`` (a function or method) to ``totals[name]``."""
    original = getattr(owner, name)
    totals.setdefault(name, 0.0)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def bench_submit(conn, n_target: int = 1000) -> SubmitTimes:
    specs = []
    i = 0
    while sum(len(s.materials) * len(s.structures) for s in specs) < n_target:
        specs.append(WorkflowSpec(name=f"bench{i}", materials=MATERIALS, structures=["monolayer", "bulk"],
                                  steps=["relax", "scf_sr", "scf_soc", "bands_soc", "analysis"]))
        i += 1
    # what submit builds its Workflows with (build_workflows in versions before the preset was stored once)
    builder = "workflows_for" if hasattr(tmdflow_fireworks, "workflows_for") else "build_workflows"
    totals: dict[str, float] = {}
    with timed(tmdflow_fireworks, builder, totals), timed(conn.launchpad, "bulk_add_wfs", totals), \
            timed(conn.embedded, "save", totals):
        start, cpu = time.perf_counter(), time.process_time()
        n = sum(len(submit(conn, spec)) for spec in specs)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    conn.checkpoint()
    last = time.perf_counter() - start
    return SubmitTimes(n, conn.launchpad.fireworks.count_documents({}), len(specs), seconds, cpu,
                       totals[builder], totals["bulk_add_wfs"], totals["save"], conn.embedded.path.stat().st_size,
                       last)


def bench_query(conn, n_docs: int = 10_000, repeats: int = 20) -> tuple[int, float]:
    sys.path.append(str(Path(__file__).resolve().parent.parent))  # the repository's tests/, after any PYTHONPATH
    from tests.helpers import material_doc  # the same document shape as real results

    coll = conn.db["materials"]
    docs = []
    for i in range(n_docs):
        m = material_doc(MATERIALS[i % len(MATERIALS)], ["monolayer", "bulk"][i % 2], dvb=100 + i % 400)
        d = m.model_dump(mode="json")
        d["material_id"] = f"{m.formula}-{m.dimensionality}-p{i}"
        d["preset"] = f"p{i}"
        docs.append(d)
    coll.insert_many(docs)
    store = ResultsStore(conn.db)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        found = store.materials(MaterialQuery(formula="WSe2"))
        times.append(time.perf_counter() - start)
    return len(found), statistics.median(times)


def overhead(store_file: Path) -> list[tuple[str, float, float]]:
    """(step, Firework run time, external program time) for every completed launch of a store file."""
    data = bson.json_util.loads(store_file.read_text())["tmdflow"]
    fws = {doc["fw_id"]: doc for _, doc in data["fireworks"]["documents"]}
    tasks = {doc["task_id"]: doc for _, doc in data["tasks"]["documents"]}
    rows = []
    for _, launch in data["launches"]["documents"]:
        if launch.get("state") != "COMPLETED":
            continue
        fw = fws[launch["fw_id"]]
        t = fw["spec"]["_tasks"][0]
        task = tasks.get(f"{t['formula']}-{t['dimensionality']}-{t['preset']}-{t['step']}")
        if task is None:
            continue
        external = (task.get("wall_seconds") or 0) + (task["outputs"].get("bandsx_wall_seconds") or 0)
        rows.append((fw["name"], launch["runtime_secs"], external))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--overhead-from", type=Path, help="an embedded store file with completed runs")
    ap.add_argument("--submit-only", action="store_true", help="the submit benchmark alone")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="tmdflow-bench-store-"))
    conn = connect(load_settings(db_uri=f"embedded:{d / 'store.json'}", work_dir=d))
    print(f"tmdflow from {Path(tmdflow_fireworks.__file__).parent.parent}")
    print(bench_submit(conn).line())
    if args.submit_only:
        return
    found, q = bench_query(conn)
    print(f"query: formula=WSe2 over 10000 material documents -> {found} docs in {1000 * q:.1f} ms (median of 20)")
    if args.overhead_from:
        rows = overhead(args.overhead_from)
        for name, fw_time, ext in rows:
            if ext > 0:
                print(f"overhead {name:32s} firework {fw_time:7.2f} s  programs {ext:7.2f} s  "
                      f"orchestration {fw_time - ext:5.2f} s = {100 * (fw_time - ext) / ext:4.1f} %")
        tot_fw = sum(r[1] for r in rows if r[2] > 0)
        tot_ext = sum(r[2] for r in rows if r[2] > 0)
        print(f"overhead total: {100 * (tot_fw - tot_ext) / tot_ext:.2f} % of the program time")


if __name__ == "__main__":
    main()
