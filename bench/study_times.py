"""Step, system and total times of a study, read back from the results store.

    TMDFLOW_DB_URI=embedded:/path/to/copy-of-store.json .venv/bin/python bench/study_times.py [--preset paper]

(With the embedded store, read a copy while a launcher is running: the launcher holds the file.)
Printed as a Markdown table per system: the step's wall time as the launcher measured it, pw.x's
own CPU clock of its first MPI process, and that of the post-processing program the step runs
after pw.x (bands.x for bands_soc and soc_map, projwfc.x for bands_sr) -- on a machine shared
with other jobs the wall time is inflated, the CPU time is what the step costs on an idle one.
Tasks stored before tmdflow recorded ``pw_cpu_seconds`` / ``postprocessing_cpu_seconds`` get
them from the program outputs in their run directory.
Results are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from tmdflow.calculators.espresso.adapter import EspressoCalculator
from tmdflow.calculators.espresso.parsers.stdout import parse_pw_stdout
from tmdflow.settings import load_settings
from tmdflow.steps import STEPS
from tmdflow.store.connection import connect
from tmdflow.store.documents import TaskDocument
from tmdflow.store.results import ResultsStore

#: the program each step ran after pw.x and its output in the task's directory (the QE adapter's
#: file names), for tasks stored before ``postprocessing_cpu_seconds`` was recorded
POSTPROCESSING_OUTPUTS = {
    "bands_soc": ("BANDS", Path(EspressoCalculator.SPIN_TEXTURE).with_suffix(".out").name),  # spin_texture.out
    "soc_map": ("BANDS", "soc_map_sigma.out"),  # the band map's <sigma_z>: <step>_sigma.dat
    "bands_sr": ("PROJWFC", "projwfc.out"),
}


def cpu_seconds(task: TaskDocument) -> float | None:
    recorded = task.outputs.pw_cpu_seconds
    if recorded is not None or not task.directory:
        return recorded
    out = Path(task.directory) / f"{task.step}.out"  # the adapter's <step>.in / <step>.out
    return parse_pw_stdout(out).cpu_seconds if out.exists() else None


def postprocessing_seconds(task: TaskDocument) -> float | None:
    recorded = task.outputs.postprocessing_cpu_seconds
    if recorded is not None or not task.directory or task.step not in POSTPROCESSING_OUTPUTS:
        return recorded
    program, output = POSTPROCESSING_OUTPUTS[task.step]
    return EspressoCalculator.postprocessing_cpu_seconds(Path(task.directory) / output, program)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", help="only tasks of this preset")
    args = ap.parse_args()
    store = ResultsStore(connect(load_settings()).db)
    tasks = store.tasks({"preset": args.preset} if args.preset else None)
    systems: dict[str, list[TaskDocument]] = defaultdict(list)
    for t in tasks:
        systems[f"{t.formula} {t.dimensionality}"].append(t)
    total_wall = total_cpu = total_post = 0.0
    print("| system | step | wall s | pw.x CPU min | bands.x/projwfc.x CPU min | CPU min |\n|---|---|---|---|---|---|")
    minutes = lambda s: f"{s / 60:.1f}" if s is not None else "—"  # noqa: E731
    for name in sorted(systems):
        wall = cpu = post = 0.0
        for t in sorted(systems[name], key=lambda t: STEPS.index(t.step) if t.step in STEPS else len(STEPS)):
            c, p = cpu_seconds(t), postprocessing_seconds(t)
            wall += t.wall_seconds or 0.0
            cpu += c or 0.0
            post += p or 0.0
            print(f"| {name} | {t.step} | {t.wall_seconds or 0:.0f} | {minutes(c)} | {minutes(p)} | "
                  f"{minutes((c or 0.0) + (p or 0.0))} |")
        print(f"| **{name}** | all steps | **{wall:.0f}** | **{cpu / 60:.1f}** | **{post / 60:.1f}** | "
              f"**{(cpu + post) / 60:.1f}** |")
        total_wall, total_cpu, total_post = total_wall + wall, total_cpu + cpu, total_post + post
    print(f"\n{len(systems)} systems: wall {total_wall / 3600:.2f} h, pw.x CPU {total_cpu / 3600:.2f} h, "
          f"bands.x/projwfc.x CPU {total_post / 3600:.2f} h, together {(total_cpu + total_post) / 3600:.2f} h")


if __name__ == "__main__":
    main()
