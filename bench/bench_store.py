"""Workflow/store figures: submit 1000 workflows, query 10 000 material documents, and the
orchestration overhead per step versus the external programs' own run time.

    .venv/bin/python bench/bench_store.py [--overhead-from STORE.json]

Runs on a temporary embedded store (the default back end); results go to docs/performance.md.
Targets (issue): submit 1000 < 10 s; query by formula over 10 000 documents < 100 ms;
orchestration overhead <= 2 % of the pw.x time per step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import bson.json_util

from tmdflow.fireworks import build_workflows, submit
from tmdflow.settings import load_settings
from tmdflow.store.connection import connect
from tmdflow.store.results import MaterialQuery, ResultsStore
from tmdflow.workflow_spec import WorkflowSpec

MATERIALS = ["MoS2", "MoSe2", "WS2", "WSe2", "MoTe2", "WTe2", "CrS2", "CrSe2", "CrTe2"]


def bench_submit(conn, n_target: int = 1000) -> tuple[int, float]:
    specs = []
    i = 0
    while sum(len(s.materials) * len(s.structures) for s in specs) < n_target:
        specs.append(WorkflowSpec(name=f"bench{i}", materials=MATERIALS, structures=["monolayer", "bulk"],
                                  steps=["relax", "scf_sr", "scf_soc", "bands_soc", "analysis"]))
        i += 1
    start = time.perf_counter()
    n = sum(len(submit(conn, spec)) for spec in specs)
    return n, time.perf_counter() - start


def bench_query(conn, n_docs: int = 10_000, repeats: int = 20) -> tuple[int, float]:
    from tests.test_store import _material  # the same document shape as real results

    coll = conn.db["materials"]
    docs = []
    for i in range(n_docs):
        m = _material(MATERIALS[i % len(MATERIALS)], ["monolayer", "bulk"][i % 2], dvb=100 + i % 400)
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
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="tmdflow-bench-store-"))
    conn = connect(load_settings(db_uri=f"embedded:{d / 'store.json'}", work_dir=d))
    n, secs = bench_submit(conn)
    print(f"submit: {n} workflows ({n * 5} Fireworks) in {secs:.2f} s  ({1000 * secs / n:.1f} ms/workflow)")
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
