"""Step, system and total times of a study, read back from the results store.

    TMDFLOW_DB_URI=embedded:/path/to/copy-of-store.json .venv/bin/python bench/study_times.py [--preset paper]

(With the embedded store, read a copy while a launcher is running: the launcher holds the file.)
Printed as a Markdown table per system: the step's wall time as the launcher measured it, and
pw.x's own CPU clock of its first MPI process -- on a machine shared with other jobs the wall
time is inflated, the CPU time is what the step costs on an idle one.  Tasks stored before
tmdflow recorded ``pw_cpu_seconds`` get it from the pw.x output in their run directory.
Results are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from tmdflow.calculators.espresso.parsers.stdout import parse_pw_stdout
from tmdflow.settings import load_settings
from tmdflow.steps import STEPS
from tmdflow.store.connection import connect
from tmdflow.store.documents import TaskDocument
from tmdflow.store.results import ResultsStore

def cpu_seconds(task: TaskDocument) -> float | None:
    recorded = (task.outputs or {}).get("pw_cpu_seconds")
    if recorded is not None or not task.directory:
        return recorded
    out = Path(task.directory) / f"{task.step}.out"  # the adapter's <step>.in / <step>.out
    return parse_pw_stdout(out).cpu_seconds if out.exists() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", help="only tasks of this preset")
    args = ap.parse_args()
    store = ResultsStore(connect(load_settings()).db)
    tasks = store.tasks({"preset": args.preset} if args.preset else None)
    systems: dict[str, list[TaskDocument]] = defaultdict(list)
    for t in tasks:
        systems[f"{t.formula} {t.dimensionality}"].append(t)
    total_wall = total_cpu = 0.0
    print("| system | step | wall s | pw.x CPU min |\n|---|---|---|---|")
    for name in sorted(systems):
        wall = cpu = 0.0
        for t in sorted(systems[name], key=lambda t: STEPS.index(t.step) if t.step in STEPS else len(STEPS)):
            c = cpu_seconds(t)
            wall += t.wall_seconds or 0.0
            cpu += c or 0.0
            print(f"| {name} | {t.step} | {t.wall_seconds or 0:.0f} | {c / 60:.1f} |" if c is not None
                  else f"| {name} | {t.step} | {t.wall_seconds or 0:.0f} | — |")
        print(f"| **{name}** | all steps | **{wall:.0f}** | **{cpu / 60:.1f}** |")
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
    print(f"\n{len(systems)} systems: wall {total_wall / 3600:.2f} h, pw.x CPU {total_cpu / 3600:.2f} h")


if __name__ == "__main__":
    main()
