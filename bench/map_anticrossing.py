"""Fig. 3's valence pair below the contour window: the lower member's anticrossing near M.

    .venv/bin/python bench/map_anticrossing.py [RUN_DIR ...]

Each RUN_DIR holds a soc_map run on a 36 x 36 wedge (``soc_map.xml`` + ``soc_map_sigma.dat``)
with its check points in the same run and/or beside it (``checks.xml`` + ``checks_sigma.dat``, a
bands run from the same density);
default: the two real fixtures, WS2 at ``test`` (40 checks) and WSe2 at ``paper`` (its map's 8 and
32 independent ones), see
tests/fixtures/README.md.  Printed per run and method: the largest error of Delta_UVB at the
check points within the 0.9 eV contour window and outside it, in meV:

* ``direct``: each member of the valence pair interpolated on the K triangle (TrianglePair, the
  method Fig. 3 uses);
* ``two-level``: per spin, the trace S = E_v + E_n and the squared difference P = (E_v - E_n)^2 of
  the valence member and the next pair's member of the same spin, interpolated the same way, and
  E_v = S/2 + sqrt(P)/2 -- smooth through an avoided crossing of two bands;
* ``blend``: two-level where the gap E_v - E_n is below 0.3 eV, direct above 0.6 eV, smoothstep
  between (TrianglePair with ``below``, what Fig. 3 uses: TrianglePair.TWO_LEVEL_GAP_EV).

Used for docs/performance.md ("Session 19: the anticrossing treated as a two-level one").  Takes a
second; runs no pw.x.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tmdflow.analysis.bzinterp import (CONTOUR_WINDOW_EV, NEXT_VALENCE_PAIR, PAIRS, TrianglePair, full_grid,
                                       interpolate, spin_pairs, split_map)
from tmdflow.bands import BandData
from tmdflow.calculators.espresso.parsers.bandsx import parse_bandsx_sigma_z
from tmdflow.calculators.espresso.parsers.xml import parse_pw_xml

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "qe-6.7"
DEFAULT_RUNS = (FIXTURES / "ws2_test_map36", FIXTURES / "wse2_paper_map36")


def read_run(directory: Path, step: str) -> BandData:
    parsed = parse_pw_xml(directory / f"{step}.xml").bands
    bands = BandData(parsed.kpoints_crystal, parsed.eigenvalues, parsed.n_electrons, parsed.spinor,
                     parsed.reciprocal_cell)
    return bands.with_sigma_z(parse_bandsx_sigma_z(directory / f"{step}_sigma.dat", bands.eigenvalues))


def grid_and_checks(directory: Path) -> tuple[BandData, dict[str, BandData]]:
    """The map's 36 x 36 wedge grid and its check points by origin: the map run's own ("map") and,
    if the directory has them, those of a separate bands run from the same density ("separate",
    checks.xml + checks_sigma.dat)."""
    grid, own = split_map(read_run(directory, "soc_map"), 36)
    checks = {} if own is None else {"map": own}
    if (directory / "checks.xml").exists():
        checks["separate"] = read_run(directory, "checks")
    if not checks:
        raise SystemExit(f"{directory}: the map has no check points")
    return grid, checks


def valence_members(grid: BandData, checks: BandData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(E_up, E_down) of the valence pair at the check points, eV from the grid's VBM, per method."""
    _, up, down = full_grid(grid, {**PAIRS, **NEXT_VALENCE_PAIR})
    cell = np.asarray(grid.reciprocal_cell)
    k = np.asarray(checks.kpoints_crystal)
    direct = TrianglePair(up["uvb"], down["uvb"], cell)(k)
    trace = TrianglePair(up["uvb"] + up["nvb"], down["uvb"] + down["nvb"], cell)(k)
    square = TrianglePair((up["uvb"] - up["nvb"]) ** 2, (down["uvb"] - down["nvb"]) ** 2, cell)(k)
    gaps = [np.sqrt(np.maximum(p, 0.0)) for p in square]
    two_level = tuple(s / 2 + g / 2 for s, g in zip(trace, gaps))
    blend = interpolate(grid).pairs["uvb"](k)  # what Fig. 3 uses
    return {"direct": direct, "two-level": two_level, "blend": blend}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, default=list(DEFAULT_RUNS), help="soc_map run directories")
    args = parser.parse_args(argv)
    print(f"{'run':<20} {'checks':<9} {'method':<10} {'points':>6} {'window meV':>10} {'outside meV':>11}")
    for directory in args.runs:
        grid, groups = grid_and_checks(directory)
        vbm = float(np.asarray(grid.eigenvalues)[:, grid.n_occupied - 1].max())
        for origin, checks in groups.items():
            ref = spin_pairs(checks, vbm)
            window = np.maximum(ref.up["uvb"], ref.down["uvb"]) > -CONTOUR_WINDOW_EV
            for method, (up, down) in valence_members(grid, checks).items():
                err = np.abs((up - down) - (ref.up["uvb"] - ref.down["uvb"])) * 1000.0
                inside = f"{err[window].max():10.2f}" if window.any() else f"{'-':>10}"
                outside = f"{err[~window].max():11.2f}" if (~window).any() else f"{'-':>11}"
                print(f"{directory.name:<20} {origin:<9} {method:<10} {len(err):>6} {inside} {outside}")


if __name__ == "__main__":
    main()
