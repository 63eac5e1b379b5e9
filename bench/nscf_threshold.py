"""Cost and accuracy of the Davidson threshold in the non-SCF (bands) runs.

    .venv/bin/python bench/nscf_threshold.py RUN_DIR/soc [--thresholds 1e-10 1e-9 1e-8]
                                             [--variant "diago_thr_init=1e-9, diago_david_ndim=4"]

RUN_DIR/soc must hold a finished spin-orbit SCF (``out/``) and the ``bands_soc.in`` tmdflow
wrote.  For each threshold, the same input is run on four k-points (Gamma, M, K, Gamma-K/2) in
a fresh copy of ``out/``, once as written (pw.x then derives the threshold from conv_thr:
ethr = 0.1 min(1e-2, conv_thr/N_el), 3.8e-12 Ry at the paper preset) and once per value with
``diago_thr_init`` set (and once per ``--variant``: &ELECTRONS lines added as given).  Printed: pw.x CPU time, Davidson iterations per k-point, the largest
eigenvalue change against the reference (all bands, from the XML, meV) and Delta_VB(K).  Results are recorded
in docs/performance.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tmdflow.calculators.espresso.parsers.stdout import parse_pw_stdout
from tmdflow.calculators.espresso.parsers.xml import parse_pw_xml
from tmdflow.calculators.espresso.profile import EspressoProfile
from tmdflow.settings import load_settings

KPOINTS = [(0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (1 / 3, 1 / 3, 0.0), (1 / 6, 1 / 6, 0.0)]
K_INDEX = 2


def _input_with(template: str, electrons: str | None) -> str:
    head = template.split("K_POINTS")[0]
    if electrons:
        lines = "".join(f"  {item.strip()}\n" for item in electrons.split(","))
        head = head.replace("&ELECTRONS\n", f"&ELECTRONS\n{lines}", 1)
    kpts = "\n".join(f"  {k[0]:.10f} {k[1]:.10f} {k[2]:.10f} 1.0" for k in KPOINTS)
    return f"{head}K_POINTS crystal\n  {len(KPOINTS)}\n{kpts}\n"


def run_once(soc_dir: Path, electrons: str | None, profile: EspressoProfile) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tmdflow-ethr-"))
    try:
        shutil.copytree(soc_dir / "out", work / "out")
        shutil.copytree(soc_dir / "pseudo", work / "pseudo", symlinks=True)
        (work / "bands.in").write_text(_input_with((soc_dir / "bands_soc.in").read_text(), electrons))
        argv = profile.argv(profile.pw_command) + ["-nk", str(profile.nprocs), "-in", "bands.in"]
        with open(work / "bands.out", "w") as out:
            subprocess.run(argv, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=profile.environment(),
                           check=True)
        text = (work / "bands.out").read_text()
        prefix = re.search(r"prefix\s*=\s*'([^']+)'", (work / "bands.in").read_text()).group(1)
        bands = parse_pw_xml(work / "out" / f"{prefix}.save" / "data-file-schema.xml").bands
        stdout = parse_pw_stdout(text)
        ethr, iters = re.search(r"ethr =\s*([-\dE.+]+),\s*avg # of iterations =\s*([\d.]+)", text).groups()
        return {"eig": bands.eigenvalues, "nel": int(round(bands.n_electrons)), "cpu": stdout.cpu_seconds,
                "ethr": float(ethr), "iters": float(iters), "not_converged": stdout.unconverged_eigenvalues}
    finally:
        shutil.rmtree(work)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("soc_dir", type=Path)
    ap.add_argument("--thresholds", type=float, nargs="*", default=[1e-10, 1e-9, 1e-8])
    ap.add_argument("--variant", action="append", default=[],
                    help='extra &ELECTRONS settings, comma-separated, e.g. "diago_thr_init=1e-9, diago_david_ndim=4"')
    args = ap.parse_args()
    profile = EspressoProfile.from_settings(load_settings())
    ref = run_once(args.soc_dir, None, profile)
    nel = ref["nel"]

    def dvb(r: dict) -> float:
        e = r["eig"][K_INDEX]
        return 1000 * (e[nel - 1] - e[nel - 2])

    print(f"{'variant':>40} {'ethr used':>10} {'CPU s':>8} {'iter/k':>7} {'not conv':>8} "
          f"{'max|dE| meV':>12} {'Delta_VB(K) meV':>16} {'CPU ratio':>9}")
    rows = [("(from conv_thr)", ref)]
    rows += [(f"diago_thr_init={t:.0e}", run_once(args.soc_dir, f"diago_thr_init={t:.1e}", profile))
             for t in args.thresholds]
    rows += [(v, run_once(args.soc_dir, v, profile)) for v in args.variant]
    for label, r in rows:
        diff = 1000 * np.max(np.abs(r["eig"] - ref["eig"]))
        print(f"{label:>40} {r['ethr']:10.2e} {r['cpu']:8.1f} {r['iters']:7.1f} {r['not_converged']:8d} "
              f"{diff:12.1e} {dvb(r):16.4f} {r['cpu'] / ref['cpu']:9.2f}")


if __name__ == "__main__":
    main()
