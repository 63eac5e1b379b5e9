"""Convergence of Delta_VB(K), Delta_CB(K) and dE(Gamma-K) for one monolayer (default MoS2).

    .venv/bin/python bench/convergence.py [FORMULA] [--scan ecut|kmesh|vacuum|all]

Each point is a full tmdflow spin-orbit run (SCF + bands at Gamma, K, K', M, Q + bands.x).
Prints one row per setting; the figures in docs/physics.md come from this script.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tmdflow.compute import compute_material
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings

SCANS = {
    "ecut": [dict(ecutwfc=e, ecutrho=8 * e) for e in (45.0, 60.0, 75.0)],
    "kmesh": [dict(kmesh=k) for k in (6, 9, 12, 16)],
    "vacuum": [dict(vacuum=v) for v in (15.0, 20.0, 30.0)],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formula", nargs="?", default="MoS2")
    ap.add_argument("--scan", default="all", choices=[*SCANS, "all"])
    args = ap.parse_args()
    settings = load_settings(work_dir=Path(tempfile.mkdtemp(prefix="tmdflow-conv-")))
    scans = SCANS if args.scan == "all" else {args.scan: SCANS[args.scan]}
    print(f"# {args.formula}, base preset quick; nprocs={settings.nprocs}")
    print(f"{'scan':7s} {'setting':28s} {'D_VB(K)':>9s} {'D_CB(K)':>9s} {'dE(G-K)':>9s} {'gap':>7s} {'wall s':>7s}")
    for name, points in scans.items():
        for overrides in points:
            vacuum = overrides.pop("vacuum", None)
            preset = load_preset("quick", overrides)
            start = time.monotonic()
            r = compute_material(args.formula, preset, settings, vacuum=vacuum,
                                 directory=settings.work_dir / f"{name}-{len(list(settings.work_dir.iterdir()))}")
            s = r.splitting
            label = ", ".join(f"{k}={v:g}" for k, v in overrides.items()) or f"vacuum={vacuum:g}"
            print(f"{name:7s} {label:28s} {s.delta_vb_k_mev:9.1f} {s.delta_cb_k_mev:+9.1f} "
                  f"{s.delta_e_gamma_k_mev:9.1f} {s.gap_ev:7.3f} {time.monotonic() - start:7.0f}", flush=True)


if __name__ == "__main__":
    main()
