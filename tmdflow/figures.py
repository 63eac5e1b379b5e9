"""The paper's figures as files (PNG + SVG, data as CSV), from code-independent band data.

Fig. 2 analogue: bands on Gamma-M-K-Gamma with (solid) and without (dotted) spin-orbit coupling.
Fig. 3 analogue: signed splitting Delta(k) = E(up) - E(down) of the uppermost valence (UVB) and
lowermost conduction (LCB) pairs over the zone (first BZ drawn), and UVB iso-energy contours at
binding energies 0.2 / 0.5 / 0.8 eV coloured by spin.
Fig. 4 analogue: Delta along Gamma-K for UVB and LCB, and the orbital characters (M d_z2,
M d_xy + d_x2-y2, X p_z, X p_x + p_y) of the scalar-relativistic UVB and LCB on the same path.
Energies in eV relative to the valence band maximum of the spin-orbit run.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .analysis.bzmap import SplittingMap, bz_hexagon, signed_pair_splitting
from .analysis.checks import path_segment
from .bands import BandData

BINDING_ENERGIES_EV = (0.2, 0.5, 0.8)
ORBITALS = (("M_dz2", "M $d_{z^2}$"), ("M_dxy_dx2y2", "M $d_{xy}+d_{x^2-y^2}$"), ("X_pz", "X $p_z$"),
            ("X_pxpy", "X $p_x+p_y$"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    return paths


def _write_csv(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _path_part(bands: BandData) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The Gamma-M-K-Gamma part of a splitting k list: cumulative distance (1/A), indices, labels."""
    idx = np.arange(5, len(bands.kpoints_crystal))
    k = bands.kpoints_cartesian[idx]
    x = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(k, axis=0), axis=1))])
    return x, idx, [bands.labels[i] if i < len(bands.labels) else "" for i in idx]


def fig2_bands(soc: BandData, sr: BandData | None, out: Path, title: str, window=(-3.0, 3.0)) -> list[Path]:
    plt = _plt()
    x, idx, labels = _path_part(soc)
    if not len(idx):
        return []
    nocc = soc.n_occupied
    vbm = float(np.asarray(soc.eigenvalues)[:, nocc - 1].max())
    e_soc = np.asarray(soc.eigenvalues)[idx] - vbm
    fig, ax = plt.subplots(figsize=(4.5, 5))
    ax.plot(x, e_soc, color="k", lw=1.0)
    rows = [[f"{xi:.6f}", "soc", *map(lambda v: f"{v:.5f}", e)] for xi, e in zip(x, e_soc)]
    if sr is not None:
        e_sr = np.asarray(sr.eigenvalues)[idx] - vbm
        ax.plot(x, e_sr, color="tab:red", lw=1.0, ls=":")
        rows += [[f"{xi:.6f}", "sr", *map(lambda v: f"{v:.5f}", e)] for xi, e in zip(x, e_sr)]
    ticks = [(xi, "Γ" if l == "G" else l) for xi, l in zip(x, labels) if l]
    ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks])
    for t in ticks:
        ax.axvline(t[0], color="0.7", lw=0.5)
    ax.axhline(0, color="0.5", lw=0.5, ls="--")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(*window)
    ax.set_ylabel("E − E$_{VBM}$ (eV)")
    ax.set_title(f"{title}: with (solid) and without (dotted) SOC", fontsize=9)
    files = _save(fig, out, "fig2_bands")
    n = e_soc.shape[1]
    files.append(_write_csv(out / "fig2_bands.csv", ["k_path_inv_angstrom", "run", *[f"band{i + 1}_ev" for i in range(n)]],
                            rows))
    return files


def fig3_map(m: SplittingMap, out: Path, title: str) -> list[Path]:
    plt = _plt()
    import matplotlib.tri as mtri

    tri = mtri.Triangulation(m.k_cartesian[:, 0], m.k_cartesian[:, 1])
    hexagon = bz_hexagon(m.reciprocal_cell)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
    fig.suptitle(f"{title}: Δ = E(↑) − E(↓)", fontsize=10)
    for ax, data, name in ((axes[0], m.delta_uvb_mev, "UVB"), (axes[1], m.delta_lcb_mev, "LCB")):
        lim = max(float(np.abs(data).max()), 1e-6)
        cs = ax.tricontourf(tri, data, levels=np.linspace(-lim, lim, 41), cmap="RdBu_r")
        ax.plot(hexagon[:, 0], hexagon[:, 1], color="k", lw=1.0)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("k$_x$ (1/Å)")
        fig.colorbar(cs, ax=ax, shrink=0.8, label="Δ (meV)", format="%.0f")
    axes[0].set_ylabel("k$_y$ (1/Å)")
    files = _save(fig, out, "fig3_splitting_map")
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    interp_s = mtri.LinearTriInterpolator(tri, m.uvb_sigma_z)
    for be in BINDING_ENERGIES_EV:
        cs = ax.tricontour(tri, m.uvb_energy_ev, levels=[-be], colors="none")
        for seg in (p for coll in cs.allsegs for p in coll):
            if len(seg) < 2:
                continue
            s = np.asarray(interp_s(seg[:, 0], seg[:, 1]).filled(0.0))
            colors = np.where(s >= 0, "tab:red", "tab:blue")
            for i in range(len(seg) - 1):
                ax.plot(seg[i:i + 2, 0], seg[i:i + 2, 1], color=colors[i], lw=1.2)
    ax.plot(hexagon[:, 0], hexagon[:, 1], color="k", lw=1.0)
    ax.set_aspect("equal")
    ax.set_title(f"{title} UVB iso-energies −0.2/−0.5/−0.8 eV (red ↑, blue ↓)", fontsize=8)
    ax.set_xlabel("k$_x$ (1/Å)")
    ax.set_ylabel("k$_y$ (1/Å)")
    files += _save(fig, out, "fig3_contours")
    files.append(_write_csv(out / "fig3_map.csv",
                            ["kx_inv_angstrom", "ky_inv_angstrom", "uvb_e_ev", "uvb_sigma_z", "delta_uvb_mev",
                             "delta_lcb_mev"],
                            ([f"{a:.6f}" for a in row] for row in np.column_stack(
                                [m.k_cartesian, m.uvb_energy_ev, m.uvb_sigma_z, m.delta_uvb_mev, m.delta_lcb_mev]))))
    return files


def gamma_k_profile(soc: BandData, sr: BandData | None = None,
                    weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Along Gamma -> K (the K-Gamma segment of the path, reversed): fraction of Gamma-K,
    signed Delta (meV) of UVB and LCB, and the orbital weights of the SR UVB / LCB."""
    seg = path_segment(soc.labels, "K", "G")[::-1]
    if not seg or soc.sigma_z is None:  # no path, or no spin texture (spin_texture: false): no signed Delta
        return {}
    nocc = soc.n_occupied
    e, sz = np.asarray(soc.eigenvalues)[seg], np.asarray(soc.sigma_z)[seg]
    k = soc.kpoints_cartesian[seg]
    frac = np.linalg.norm(k - k[0], axis=1) / np.linalg.norm(k[-1] - k[0])
    out = {"fraction": frac, "delta_uvb_mev": signed_pair_splitting(e, sz, nocc - 2),
           "delta_lcb_mev": signed_pair_splitting(e, sz, nocc)}
    if sr is not None and weights:
        n_sr = sr.n_occupied
        for key, _ in ORBITALS:
            w = np.asarray(weights[key])[seg]
            out[f"uvb_{key}"], out[f"lcb_{key}"] = w[:, n_sr - 1], w[:, n_sr]
    return out


def fig4_gamma_k(profile: dict[str, np.ndarray], out: Path, title: str) -> list[Path]:
    if not profile:
        return []
    plt = _plt()
    has_w = any(k.startswith("uvb_") for k in profile)
    fig, axes = plt.subplots(3 if has_w else 1, 1, figsize=(4.5, 8 if has_w else 3.2), sharex=True, squeeze=False)
    axes = axes[:, 0]
    f = profile["fraction"]
    axes[0].plot(f, profile["delta_uvb_mev"], "k-", label="UVB")
    axes[0].plot(f, profile["delta_lcb_mev"], "r--", label="LCB")
    axes[0].axhline(0, color="0.6", lw=0.5)
    axes[0].set_ylabel("Δ = E(↑) − E(↓) (meV)")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"{title}: Γ → K", fontsize=9)
    if has_w:
        for ax, band in ((axes[1], "uvb"), (axes[2], "lcb")):
            for key, name in ORBITALS:
                ax.plot(f, profile[f"{band}_{key}"], label=name)
            ax.set_ylabel(f"{band.upper()} weight (SR)")
            ax.set_ylim(0, 1)
        axes[1].legend(fontsize=7, ncol=2)
    axes[-1].set_xticks([0, 1], ["Γ", "K"])
    axes[-1].set_xlabel("k along Γ–K")
    files = _save(fig, out, "fig4_gamma_k")
    keys = list(profile)
    files.append(_write_csv(out / "fig4_gamma_k.csv", keys,
                            ([f"{profile[k][i]:.6f}" for k in keys] for i in range(len(f)))))
    return files
