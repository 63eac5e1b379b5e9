"""Δ at K with two pseudopotential families, same geometry and settings.

    .venv/bin/python bench/pseudo_families.py [FORMULA ...] [--families pslibrary-paw,pslibrary-1.0.0-paw]
                                              [--ecutwfc 45] [--nprocs N]

Each monolayer at the paper's a, d (inputs/materials.yaml) with the `quick` preset (6x6x1, 15 A,
self-consistent spin-orbit), once per family; ecutrho = 8 x ecutwfc.  Printed: Δ_VB(K), Δ_CB(K),
δE_Γ-K (meV), the number of valence electrons pw.x saw, wall time, and the differences from the
first family.  Used for docs/physics.md ("A second PAW family").
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from tmdflow.compute import compute_material
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings


def _electrons(run_dir: Path) -> str:
    for out in run_dir.rglob("scf_soc.out"):
        m = re.search(r"number of electrons\s*=\s*([\d.]+)", out.read_text(errors="replace"))
        if m:
            return f"{float(m.group(1)):.0f}"
    return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formulas", nargs="*", default=["MoS2", "MoSe2", "WS2", "WSe2"])
    ap.add_argument("--families", default="pslibrary-paw,pslibrary-1.0.0-paw")
    ap.add_argument("--ecutwfc", type=float, default=45.0)
    ap.add_argument("--nprocs", type=int, default=None)
    args = ap.parse_args()
    families = args.families.split(",")
    work = Path(tempfile.mkdtemp(prefix="tmdflow-families-"))
    settings = load_settings(nprocs=args.nprocs, work_dir=work)
    overrides = {"ecutwfc": args.ecutwfc, "ecutrho": 8 * args.ecutwfc}
    print(f"paper geometry, quick preset (6x6x1, 15 A), {args.ecutwfc:g}/{8 * args.ecutwfc:g} Ry; {work}")
    print(f"{'':6} {'family':22} {'N_el':>4} {'Δ_VB(K)':>8} {'Δ_CB(K)':>8} {'δE_Γ-K':>8} {'wall s':>7}"
          f" {'ΔΔ_VB':>7} {'ΔΔ_CB':>7} {'ΔδE':>7}")
    for formula in args.formulas:
        ref = None
        for family in families:
            directory = work / f"{formula}-{family}"
            start = time.perf_counter()
            preset = load_preset("quick", {**overrides, "pseudo_family": family})
            s = compute_material(formula, preset, settings, directory=directory).splitting
            row = (s.delta_vb_k_mev, s.delta_cb_k_mev, s.delta_e_gamma_k_mev)
            ref = ref or row
            print(f"{formula:6} {family:22} {_electrons(directory):>4} {row[0]:8.1f} {row[1]:+8.1f} {row[2]:8.1f}"
                  f" {time.perf_counter() - start:7.0f} {row[0] - ref[0]:+7.1f} {row[1] - ref[1]:+7.1f}"
                  f" {row[2] - ref[2]:+7.1f}", flush=True)


if __name__ == "__main__":
    main()
