"""Time of each step for one material (quick preset) and tmdflow's overhead versus hand-run pw.x.

    .venv/bin/python bench/bench_steps.py [FORMULA] [--repeat N]

1. tmdflow: ``compute_material`` end to end (pseudopotentials already cached), per-step walls.
2. by hand: the *same* input files tmdflow wrote, run in a fresh directory with the same
   launcher line (mpirun -np N pw.x -nk K -in ...; bands.x -in ...), timed with the shell.
Overhead = (tmdflow total) / (sum of hand-run walls).  The difference is tmdflow's own work:
structure build + symmetry check, pseudopotential cache check, input writing, parsing, analysis.
Results are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tmdflow.calculators.espresso.profile import EspressoProfile
from tmdflow.compute import compute_material
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings


def by_hand(src: Path, profile: EspressoProfile) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="tmdflow-hand-"))
    shutil.copytree(src / "pseudo", work / "pseudo", symlinks=True)
    for name in ("scf_soc.in", "bands_soc.in", "spin_texture.in"):
        shutil.copy(src / name, work / name)
    times = {}
    env = profile.environment()
    for step, argv in (
        ("scf_soc", profile.argv(profile.pw_command) + ["-nk", str(profile.nprocs)]),
        ("bands_soc", profile.argv(profile.pw_command) + ["-nk", str(profile.nprocs)]),
        ("spin_texture", profile.argv(profile.bands_command)),
    ):
        start = time.monotonic()
        with open(work / f"{step}.out", "w") as out:
            subprocess.run(argv + ["-in", f"{step}.in"], cwd=work, stdout=out, stderr=subprocess.STDOUT,
                           env=env, check=True)
        times[step] = time.monotonic() - start
    shutil.rmtree(work)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formula", nargs="?", default="MoS2")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    settings = load_settings(work_dir=Path(tempfile.mkdtemp(prefix="tmdflow-bench-")))
    preset = load_preset("quick")
    profile = EspressoProfile.from_settings(settings)
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"nprocs={settings.nprocs}, mpi='{settings.mpi_command}'")
    print(f"# {args.formula} monolayer, preset quick ({preset.kmesh}x{preset.kmesh}x1, "
          f"{preset.ecutwfc:g}/{preset.ecutrho:g} Ry, vacuum {preset.vacuum:g} A)")
    template = settings.work_dir / "template"
    template = Path(compute_material(args.formula, preset, settings, directory=template).directory) / "soc"
    for i in range(args.repeat):
        directory = settings.work_dir / f"run{i}"
        hand_first = i % 2 == 0  # alternate the order: the first of two identical runs may differ
        if hand_first:
            hand = by_hand(template, profile)
        start = time.monotonic()
        r = compute_material(args.formula, preset, settings, directory=directory)
        total = time.monotonic() - start
        steps = {s.step: s.wall_seconds for s in r.steps}
        st = total - sum(steps.values())  # bands.x + tmdflow's own work
        if not hand_first:
            hand = by_hand(template, profile)
        hand_total = sum(hand.values())
        print(f"run {i}: tmdflow total {total:6.1f} s  (scf_soc {steps['scf_soc']:.1f}, bands_soc "
              f"{steps['bands_soc']:.1f}, spin texture + own work {st:.1f})")
        print(f"run {i}: by hand  total {hand_total:6.1f} s  (scf_soc {hand['scf_soc']:.1f}, bands_soc "
              f"{hand['bands_soc']:.1f}, spin_texture {hand['spin_texture']:.1f})")
        print(f"run {i} ({'hand first' if hand_first else 'tmdflow first'}): overhead ratio tmdflow/hand = "
              f"{total / hand_total:.3f}   "
              f"Delta_VB(K) = {r.splitting.delta_vb_k_mev:.1f} meV")


if __name__ == "__main__":
    main()
