"""Monolayer vc-relax cost and result versus the vacuum of the relaxation cell.

    .venv/bin/python bench/relax_vacuum.py [FORMULA] [--preset paper] [--vacuum 15 30]

For each vacuum: the scalar-relativistic vc-relax tmdflow runs in its relax step (cell_dofree
'2Dxy', forces < 0.5 mRy/bohr) from the starting geometry of inputs/materials.yaml, in a
fresh directory: one pw.x relaxation (EspressoCalculator.pw_relax, a rung of the relax step's
cut-off ladder) at the preset's ecutwfc/ecutrho, without the slab-stress check and raises.
Printed: relaxed a and d, BFGS steps, pw.x CPU time, and the differences from the first
vacuum.  Used to choose the preset's ``relax_vacuum`` (docs/performance.md).  Smallest run (one
relaxation): ``relax_vacuum.py MoS2 --preset test --vacuum 10``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tempfile
from pathlib import Path

from tmdflow.calculators.espresso.adapter import EspressoCalculator
from tmdflow.calculators.espresso.parsers.stdout import parse_pw_stdout
from tmdflow.materials import get_material
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings
from tmdflow.steps import initial_structure, select_pseudopotentials, table1_entry

from sweep import print_sweep


def relax_once(formula: str, preset_name: str, vacuum: float) -> dict:
    settings = load_settings()
    preset = dataclasses.replace(load_preset(preset_name), vacuum=vacuum)
    material = get_material(formula)
    pseudos = select_pseudopotentials(material, preset, settings, rels=(1,))
    scalar = {el: pseudos.for_element(el, spin_orbit=False).path for el in material.elements}
    atoms = initial_structure(formula, "monolayer", preset)
    calc = EspressoCalculator.from_settings(settings)
    work = Path(tempfile.mkdtemp(prefix=f"tmdflow-relax-{vacuum:g}-"))
    _, relaxed = calc.pw_relax(atoms, preset, work, scalar, (preset.kmesh, preset.kmesh, 1), variable_cell=True,
                               step="relax")
    text = (work / "relax.out").read_text()
    entry = table1_entry(relaxed, "monolayer", True)
    steps = re.search(r"bfgs converged in\s+(\d+) scf cycles and\s+(\d+) bfgs steps", text)
    return {"a": entry.a_angstrom, "d": entry.d_angstrom, "bfgs": int(steps.group(2)) if steps else -1,
            "cpu_min": parse_pw_stdout(text).cpu_seconds / 60, "dir": work}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formula", nargs="?", default="MoS2")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--vacuum", type=float, nargs="+", default=[15.0, 30.0])
    args = ap.parse_args()
    print_sweep(
        args.vacuum, lambda v: relax_once(args.formula, args.preset, v),
        f"{'vacuum A':>8} {'a A':>9} {'d A':>9} {'da A':>8} {'dd A':>8} {'BFGS':>5} {'CPU min':>8}  directory",
        lambda v, r, ref: f"{v:8.1f} {r['a']:9.5f} {r['d']:9.5f} {r['a'] - ref['a']:8.5f} {r['d'] - ref['d']:8.5f} "
                          f"{r['bfgs']:5d} {r['cpu_min']:8.2f}  {r['dir']}")


if __name__ == "__main__":
    main()
