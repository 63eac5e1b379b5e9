"""The slab's σ_zz at the end of a monolayer vc-relax, per relaxation cut-off.

    .venv/bin/python bench/slab_stress.py [FORMULA ...] [--cutoffs 45,60] [--kmesh 8] [--vacuum 15]
                                          [--nprocs N]

A monolayer in vacuum with relaxed atoms has σ_zz = 0 in a complete basis (nothing acts across
the vacuum), so the σ_zz pw.x reports at the end of the relaxation measures the basis-set
(Pulay) error of its stress — the same error sits in the in-plane σ_xx that the relaxation drove
to zero.  Each formula is relaxed (cell_dofree='2Dxy', the relax step of tmdflow with the
slab-stress check's threshold set out of reach, so the first relaxation's numbers are printed) from the paper's geometry
(inputs/materials.yaml) at each cut-off, ecutrho = 8 x ecutwfc.  Printed: a, d (Å), σ_xx, σ_zz as
pw.x reports it, the residual forces' share of σ_zz, σ_zz^b = σ_zz without it (the basis-set
stress the check uses), σ_xx − σ_zz^b (kbar, in the relaxation cell), pw.x CPU time.  Used for docs/physics.md ("The slab
stress check") and the defaults of relax_stress_zz_thr.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tmdflow.analysis.slab_stress import slab_stress
from tmdflow.calculators.espresso.parsers import parse_pw_xml
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings
from tmdflow.steps import StepRequest, run_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formulas", nargs="*", default=["MoS2", "MoSe2", "WS2", "WSe2"])
    ap.add_argument("--cutoffs", default="45,60", help="relaxation ecutwfc values, Ry")
    ap.add_argument("--kmesh", type=int, default=8)
    ap.add_argument("--vacuum", type=float, default=15.0)
    ap.add_argument("--nprocs", type=int, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tmdflow-slab-stress-"))
    settings = load_settings(nprocs=args.nprocs, work_dir=work)
    print(f"vc-relax 2Dxy from the paper geometry, {args.kmesh}x{args.kmesh}x1, {args.vacuum:g} A, quick preset "
          f"otherwise; {work}")
    print(f"{'':6} {'Ry':>5} {'a':>7} {'d':>7} {'σ_xx':>7} {'σ_zz':>7} {'forces':>7} {'σ_zz^b':>7} {'σxx-σzz^b':>8}"
          f" {'CPU s':>7}")
    for formula in args.formulas:
        for ecut in (float(c) for c in args.cutoffs.split(",")):
            # relax_stress_zz_thr huge: the check passes, no cut-off raise, the first relaxation is reported
            overrides = {"kmesh": args.kmesh, "vacuum": args.vacuum, "relax_stress_zz_thr": 1e6,
                         "relax_ecutwfc": ecut, "relax_ecutrho": 8 * ecut, "ecutwfc": min(45.0, ecut),
                         "ecutrho": 8 * min(45.0, ecut)}
            preset = load_preset("quick", overrides)
            out = run_step(StepRequest(f"slab-stress-{ecut:g}", formula, "monolayer", preset, "relax"), settings,
                           work / f"{ecut:g}Ry")
            xml = parse_pw_xml(Path(out.task.directory) / "relax.xml")
            c = slab_stress(xml.stress_gpa, xml.forces_ev_per_angstrom, xml.positions_angstrom, xml.cell_angstrom,
                            None)
            t1 = out.structure.to_atoms()
            z = t1.positions[:, 2]
            a = float((t1.cell[0] ** 2).sum() ** 0.5)
            d = float(abs(z[1:] - z[0]).mean())
            print(f"{formula:6} {ecut:5g} {a:7.4f} {d:7.4f} {c.sigma_xx_kbar:+7.2f} {c.sigma_zz_kbar:+7.2f}"
                  f" {c.residual_force_kbar:+7.2f} {c.sigma_zz_basis_kbar:+7.2f} {c.in_plane_without_pulay_kbar:+8.2f}"
                  f" {out.task.outputs.pw_cpu_seconds or 0:7.0f}", flush=True)


if __name__ == "__main__":
    main()
