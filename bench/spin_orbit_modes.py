"""Δ at K versus the spin-orbit treatment and the pseudopotential family, at one fixed geometry.

    .venv/bin/python bench/spin_orbit_modes.py [FORMULA] [--nc-ecutwfc 70] [--nprocs N]

Three monolayer calculations at the paper's a, d (inputs/materials.yaml), 6x6x1, 15 A vacuum:
  1. `quick` preset: PAW files, self-consistent spin-orbit (tmdflow's default route);
  2. `second_variational` preset with spin_orbit_mode=scf: NC files, self-consistent spin-orbit;
  3. `second_variational` preset as it is: NC files, spin-orbit bands on the scalar-relativistic
     density (the paper's route).
2 vs 3 isolates the self-consistency of the spin-orbit coupling; 1 vs 2 the pseudopotential
family.  Printed: Δ_VB(K), Δ_CB(K), δE_Γ-K (meV), wall time, differences from row 1.
Used for docs/physics.md ("Spin-orbit modes").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tmdflow.compute import compute_material
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formula", nargs="?", default="WSe2")
    ap.add_argument("--nc-ecutwfc", type=float, default=70.0, help="NC cut-off (ecutrho = 4x)")
    ap.add_argument("--nprocs", type=int, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tmdflow-somodes-"))
    settings = load_settings(nprocs=args.nprocs, work_dir=work)
    nc = {"ecutwfc": args.nc_ecutwfc, "ecutrho": 4 * args.nc_ecutwfc}
    cases = [
        ("PAW, scf", load_preset("quick")),
        ("NC, scf", load_preset("second_variational", {**nc, "spin_orbit_mode": "scf"})),
        ("NC, second_variational", load_preset("second_variational", nc)),
    ]
    rows = []
    for label, preset in cases:
        start = time.perf_counter()
        r = compute_material(args.formula, preset, settings, directory=work / label.replace(", ", "-"))
        s = r.splitting
        rows.append((label, s.delta_vb_k_mev, s.delta_cb_k_mev, s.delta_e_gamma_k_mev,
                     time.perf_counter() - start))
    ref = rows[0]
    print(f"{args.formula}, paper geometry, 6x6x1, 15 A; NC at {args.nc_ecutwfc:g}/{4 * args.nc_ecutwfc:g} Ry; {work}")
    print(f"{'':24} {'Δ_VB(K)':>8} {'Δ_CB(K)':>8} {'δE_Γ-K':>8} {'wall s':>7} {'ΔΔ_VB':>7} {'ΔΔ_CB':>7}")
    for label, vb, cb, de, wall in rows:
        print(f"{label:24} {vb:8.1f} {cb:+8.1f} {de:8.1f} {wall:7.0f} {vb - ref[1]:+7.1f} {cb - ref[2]:+7.1f}")


if __name__ == "__main__":
    main()
