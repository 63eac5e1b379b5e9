"""Dynamical stability of a monolayer: phonopy finite displacements with Quantum ESPRESSO forces.

Plain functions: :func:`displaced_supercells` (phonopy plans the displacements), then the caller
computes forces, then :func:`phonon_dispersion` (force constants with the translational sum
rule, frequencies on Gamma-M-K-Gamma and at Gamma, M, K) and :func:`stability_verdict`.

Verdict tolerance (docs/physics.md): finite-displacement phonons of a 2D layer in a periodic cell
often show a small imaginary flexural (ZA) branch right next to Gamma (numerical noise of the
quadratic dispersion); frequencies down to -IMAG_TOLERANCE_GAMMA_THZ are accepted within
|q| < NEAR_GAMMA_FRACTION of Gamma-M; anywhere else the layer is called unstable below
-IMAG_TOLERANCE_THZ.  Units: THz (1 THz = 33.356 cm^-1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from ase import Atoms

THZ_TO_CM1 = 33.35641
IMAG_TOLERANCE_GAMMA_THZ = 0.3  # ~10 cm^-1, within NEAR_GAMMA_FRACTION of Gamma-M
NEAR_GAMMA_FRACTION = 0.15
IMAG_TOLERANCE_THZ = 0.05
#: file stem of the dispersion figure and its data (<stem>.png, .svg, .csv beside the other figures)
DISPERSION_STEM = "phonons"
SPECIAL_Q = {"G": (0.0, 0.0, 0.0), "M": (0.5, 0.0, 0.0), "K": (1 / 3, 1 / 3, 0.0)}


def _phonopy_atoms(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:],
                        scaled_positions=atoms.get_scaled_positions())


def displaced_supercells(atoms: Atoms, n: int, distance: float):
    """(phonopy object, list of displaced n x n x 1 supercells as ASE Atoms)."""
    from phonopy import Phonopy

    phonon = Phonopy(_phonopy_atoms(atoms), supercell_matrix=np.diag([n, n, 1]), primitive_matrix=None)
    phonon.generate_displacements(distance=distance)
    cells = [Atoms(s.symbols, cell=s.cell, scaled_positions=s.scaled_positions, pbc=True)
             for s in phonon.supercells_with_displacements]
    return phonon, cells


@dataclass(frozen=True)
class PhononResult:
    supercell: int
    n_displacements: int
    frequencies_thz: dict  # 'G', 'M', 'K' -> list of branch frequencies (negative = imaginary)
    path_distance: list  # cumulative |q| along Gamma-M-K-Gamma (1/Angstrom)
    path_frequencies_thz: list  # (nq, nbranch)
    path_labels: list
    min_frequency_thz: float
    min_frequency_q_fraction: float  # |q| / |Gamma-M| where the minimum is
    stable: bool
    verdict: str
    tolerance: dict = field(default_factory=lambda: {"near_gamma_thz": IMAG_TOLERANCE_GAMMA_THZ,
                                                     "near_gamma_fraction": NEAR_GAMMA_FRACTION,
                                                     "elsewhere_thz": IMAG_TOLERANCE_THZ})

    def to_dict(self) -> dict:
        return asdict(self)


def phonon_dispersion(phonon, forces: list[np.ndarray], n: int, points_per_segment: int = 40) -> PhononResult:
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()  # translational invariance (acoustic sum rule)
    special = {k: np.array(v) for k, v in SPECIAL_Q.items()}
    phonon.run_qpoints([special[k] for k in ("G", "M", "K")])
    freqs = phonon.qpoints.frequencies
    at_points = {k: [float(x) for x in freqs[i]] for i, k in enumerate(("G", "M", "K"))}
    corners = [special["G"], special["M"], special["K"], special["G"]]
    paths = [[a + (b - a) * t for t in np.linspace(0, 1, points_per_segment)] for a, b in zip(corners[:-1], corners[1:])]
    phonon.run_band_structure(paths)
    bs = phonon.band_structure
    dist = np.concatenate(bs.distances)
    fr = np.vstack(bs.frequencies)
    qs = np.vstack(bs.qpoints)
    rec = np.linalg.inv(phonon.primitive.cell).T  # rows: reciprocal vectors without 2 pi
    gm = np.linalg.norm(special["M"] @ rec)
    qfrac = np.linalg.norm(qs @ rec, axis=1) / gm
    imin = np.unravel_index(np.argmin(fr), fr.shape)
    labels = ["G"] + [""] * (points_per_segment - 2) + ["M", "M"] + [""] * (points_per_segment - 2) + ["K", "K"] + \
        [""] * (points_per_segment - 2) + ["G"]
    stable, verdict = stability_verdict(fr, qfrac)
    return PhononResult(n, len(forces), at_points, dist.tolist(), fr.tolist(), labels, float(fr[imin]),
                        float(qfrac[imin[0]]), stable, verdict)


def stability_verdict(frequencies: np.ndarray, q_fraction: np.ndarray) -> tuple[bool, str]:
    fr = np.asarray(frequencies)
    near = np.asarray(q_fraction) < NEAR_GAMMA_FRACTION
    worst_near = float(fr[near].min()) if near.any() else 0.0
    worst_far = float(fr[~near].min()) if (~near).any() else 0.0
    if worst_far < -IMAG_TOLERANCE_THZ:
        return False, (f"dynamically unstable: imaginary frequency {worst_far:.3f} THz away from Gamma "
                       f"(tolerance {IMAG_TOLERANCE_THZ} THz)")
    if worst_near < -IMAG_TOLERANCE_GAMMA_THZ:
        return False, (f"dynamically unstable: imaginary frequency {worst_near:.3f} THz near Gamma "
                       f"(beyond the {IMAG_TOLERANCE_GAMMA_THZ} THz tolerance for the flexural branch)")
    note = f" (flexural branch down to {worst_near:.3f} THz next to Gamma, within tolerance)" if worst_near < 0 else ""
    return True, "dynamically stable" + note


def plot_dispersion(result: PhononResult, out, title: str) -> list:
    import csv
    from pathlib import Path

    from .figures import pyplot, save_figure

    plt = pyplot()
    out = Path(out)
    x = np.asarray(result.path_distance)
    fr = np.asarray(result.path_frequencies_thz) * THZ_TO_CM1
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(x, fr, color="k", lw=1.0)
    ticks = [(x[i], "Γ" if l == "G" else l) for i, l in enumerate(result.path_labels) if l]
    ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks])
    for t in ticks:
        ax.axvline(t[0], color="0.7", lw=0.5)
    ax.axhline(0, color="0.5", lw=0.5, ls="--")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("frequency (cm$^{-1}$)")
    ax.set_title(f"{title}: {result.verdict.split(' (')[0]}", fontsize=9)
    files = save_figure(fig, out, DISPERSION_STEM)
    with open(out / f"{DISPERSION_STEM}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["q_path_inv_angstrom", *[f"branch{i + 1}_cm-1" for i in range(fr.shape[1])]])
        w.writerows([[f"{xi:.6f}", *[f"{v:.3f}" for v in row]] for xi, row in zip(x, fr)])
    return [*files, out / f"{DISPERSION_STEM}.csv"]
