"""Does a larger Davidson working space (diago_david_ndim) pay off in an SCF run?

    .venv/bin/python bench/scf_davidson.py INPUT_DIR/scf_soc.in [--ndim 2 4]

INPUT_DIR must hold the input tmdflow wrote and its ``pseudo/`` folder.  The input is run
unchanged except for ``diago_david_ndim`` in a fresh directory per value; printed: pw.x CPU time,
SCF iterations, total energy and highest occupied level against the first value.  Results are
recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tmdflow.calculators.espresso.parsers.stdout import parse_pw_stdout
from tmdflow.calculators.espresso.profile import EspressoProfile
from tmdflow.settings import load_settings

from sweep import print_sweep


def run_once(scf_input: Path, ndim: int, profile: EspressoProfile) -> dict:
    work = Path(tempfile.mkdtemp(prefix="tmdflow-ndim-"))
    try:
        shutil.copytree(scf_input.parent / "pseudo", work / "pseudo", symlinks=True)
        text = re.sub(r"\s*diago_david_ndim\s*=\s*\d+", "", scf_input.read_text())
        (work / "scf.in").write_text(text.replace("&ELECTRONS\n", f"&ELECTRONS\n  diago_david_ndim = {ndim}\n", 1))
        argv = profile.argv(profile.pw_command) + ["-nk", str(profile.nprocs), "-in", "scf.in"]
        with open(work / "scf.out", "w") as out:
            subprocess.run(argv, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=profile.environment(),
                           check=True)
        out = (work / "scf.out").read_text()
        return {
            "cpu": parse_pw_stdout(out).cpu_seconds,
            "iterations": parse_pw_stdout(out).n_iterations,
            "energy_ry": float(re.search(r"!\s+total energy\s+=\s+(-?\d+\.\d+)", out).group(1)),
            "level_ev": float(re.search(r"(?:highest occupied level|Fermi energy is)\s*(?:\(ev\))?\s*[=:]?\s*(-?\d+\.\d+)",
                                        out).group(1)),
        }
    finally:
        shutil.rmtree(work)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scf_input", type=Path)
    ap.add_argument("--ndim", type=int, nargs="+", default=[2, 4])
    args = ap.parse_args()
    profile = EspressoProfile.from_settings(load_settings())
    print_sweep(
        args.ndim, lambda n: run_once(args.scf_input, n, profile),
        f"{'ndim':>5} {'CPU s':>8} {'SCF iter':>8} {'dE_tot meV':>11} {'d level meV':>12} {'CPU ratio':>9}",
        lambda n, r, ref: f"{n:5d} {r['cpu']:8.1f} {r['iterations']:8d} "
                          f"{13605.693 * (r['energy_ry'] - ref['energy_ry']):11.4f} "
                          f"{1000 * (r['level_ev'] - ref['level_ev']):12.4f} {r['cpu'] / ref['cpu']:9.2f}")


if __name__ == "__main__":
    main()
