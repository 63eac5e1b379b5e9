"""Inputs of the Wannier model of the spin-orbit bands (the soc_map step's ``map_wannier_grid``):
pw.x ``bands`` on the full n x n x 1 grid from the spin-orbit SCF density, pw2wannier90.x
(overlaps, projections, spin matrices), wannier90.x (disentanglement + maximal localisation of
metal d and chalcogen p spinor orbitals).  Text and numbers only: the adapter runs the programs.

Choices (measured in docs/performance.md, "Fig. 3 from Wannier functions"):

* the manifold is the 22 spinor bands of metal d (10) and chalcogen p (2 x 6): the 14 valence
  bands above the semicore states and the 8 d-like conduction bands; the semicore bands
  (n_electrons - 14 of them) are excluded;
* the bands run carries WANNIER_EXTRA_BANDS bands above the occupied ones, so that the
  disentanglement can pick the d character out of the conduction bands it mixes with;
* the frozen window: everything up to ``frozen_above_cbm_ev`` above the grid's conduction band
  minimum is reproduced exactly on the grid; it is lowered, if needed, so that no grid point has
  more than 22 bands in it (Wannier90 would stop).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ...errors import AnalysisError
from ...materials import parse_formula
from .pwinput import OUTDIR, PREFIX

SEED = "wannier"
MODEL_FILE = "wannier_model.npz"  # the model as tmdflow reads it again (analysis.wannier.WannierModel.save)
VALENCE_MANIFOLD = 14  # spinor bands of chalcogen p + metal d_z2 character below the gap
N_WANN = 22  # metal d (5 x 2) + two chalcogens' p (2 x 3 x 2)
WANNIER_EXTRA_BANDS = 16  # bands of the grid run above the occupied ones: num_bands = N_WANN + 8
FROZEN_MARGIN_EV = 0.01  # kept below the first band beyond the manifold when the window is lowered


def grid_kpoints(n: int) -> np.ndarray:
    """The n x n x 1 grid (i/n, j/n, 0), i slowest, in the order of the .win and the bands run."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.column_stack([i.ravel() / n, j.ravel() / n, np.zeros(n * n)])


def excluded_bands(n_electrons: int) -> int:
    """How many (semicore) bands lie below the d + p manifold."""
    excluded = int(round(n_electrons)) - VALENCE_MANIFOLD
    if excluded < 0:
        raise AnalysisError(f"{n_electrons} electrons are fewer than the d + p valence manifold's {VALENCE_MANIFOLD}",
                            "the Wannier map is for MX2 with semicore states (pslibrary's M and X files)")
    return excluded


def frozen_window_top(eigenvalues: np.ndarray, n_occupied: int, excluded: int, above_cbm_ev: float) -> float:
    """dis_froz_max (eV, pw.x's zero): ``above_cbm_ev`` above the grid's lowest conduction level,
    lowered to just below the lowest level of the first band beyond the manifold when that is
    nearer (Wannier90 stops when a k-point has more than num_wann bands in the frozen window)."""
    e = np.asarray(eigenvalues)
    wanted = float(e[:, n_occupied].min()) + above_cbm_ev
    beyond = excluded + N_WANN
    limit = float(e[:, beyond].min()) - FROZEN_MARGIN_EV if e.shape[1] > beyond else wanted
    return min(wanted, limit)


def win_text(atoms: Atoms, formula: str, n: int, n_bands: int, excluded: int, frozen_top_ev: float) -> str:
    """``<SEED>.win``: spinor d + p projections, the full grid, disentanglement and localisation,
    H(R) (write_hr), the gauge matrices (write_u_matrices, for the spin operator)."""
    metal, chalcogen = parse_formula(formula)
    cell = np.asarray(atoms.cell)
    frac = atoms.get_scaled_positions(wrap=False)
    lines = [
        f"num_wann = {N_WANN}", f"num_bands = {n_bands - excluded}",
        *([f"exclude_bands = 1-{excluded}"] if excluded else []),
        "spinors = .true.",
        f"dis_froz_max = {frozen_top_ev:.6f}", "dis_num_iter = 400", "dis_conv_tol = 1.0e-10",
        # guiding centres: the slab sits at z = c/2, where the phase of M_nn(k, k + b_z) is +-pi and, without
        # them, the localisation diverges (WSe2 paper preset: total spread 5476 A^2 instead of 48)
        "num_iter = 200", "conv_tol = 1.0e-10", "conv_window = 5", "guiding_centres = .true.",
        "write_hr = .true.", "write_u_matrices = .true.", "use_ws_distance = .true.",
        "begin projections", f"{metal}: d", f"{chalcogen}: p", "end projections",
        "begin unit_cell_cart", "ang", *(" ".join(f"{x:.10f}" for x in row) for row in cell), "end unit_cell_cart",
        "begin atoms_frac", *(f"{s} " + " ".join(f"{x:.10f}" for x in p) for s, p in zip(atoms.get_chemical_symbols(), frac)),
        "end atoms_frac",
        f"mp_grid = {n} {n} 1",
        "begin kpoints", *(" ".join(f"{x:.10f}" for x in k) for k in grid_kpoints(n)), "end kpoints",
    ]
    return "\n".join(lines) + "\n"


def pw2wannier90_text() -> str:
    """pw2wannier90.x input: overlaps (mmn), projections (amn), formatted spin matrices (spn)."""
    return (f"&inputpp\n  outdir = '{OUTDIR}'\n  prefix = '{PREFIX}'\n  seedname = '{SEED}'\n"
            "  write_mmn = .true.\n  write_amn = .true.\n  write_spn = .true.\n  spn_formatted = .true.\n"
            "  write_unk = .false.\n/\n")
