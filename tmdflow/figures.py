"""The paper's figures as files (PNG + SVG, data as CSV), from code-independent band data.

Fig. 2 analogue: bands on Gamma-M-K-Gamma with (solid, optionally coloured by <sigma_z>) and
without (dotted) spin-orbit coupling; one material (figure step) or the four monolayers side by
side in one energy window (:func:`fig2_panels`, the report).
Fig. 3 analogue: the spin-resolved splitting E(up) - E(down) of the uppermost valence (UVB) and
lowermost conduction (LCB) pairs over the zone (first BZ drawn; hatched where the valence pair's
interpolated Delta is not validated to 1 meV and where the conduction pair's is no spin splitting,
tmdflow.analysis.bzinterp.unhatched_regions), and UVB
iso-energy contours at binding energies 0.2 / 0.5 / 0.8 eV coloured by spin.
Fig. 4 analogue: Delta_VB(k) and Delta_CB(k) along Gamma-K in Table I's sign convention
(docs/physics.md: at K they are the table's numbers), and the orbital characters (M d_z2,
M d_xy + d_x2-y2, X p_z, X p_x + p_y) of the scalar-relativistic UVB and LCB on the same path.
Energies in eV relative to the valence band maximum of the spin-orbit run.  Every figure names
the material, the settings (preset and overrides) and the k-mesh (:class:`FigureInfo`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .analysis.bzinterp import (CONTOUR_WINDOW_EV, POLARISED_SIGMA_Z, MapInterpolation, hatch_fields,
                                valence_validated_everywhere)
from .analysis.bzmap import SplittingMap, bz_hexagon, signed_pair_splitting
from .analysis.checks import path_segment
from .bands import BandData

BINDING_ENERGIES_EV = (0.2, 0.5, 0.8)
ORBITALS = (("M_dz2", "M $d_{z^2}$"), ("M_dxy_dx2y2", "M $d_{xy}+d_{x^2-y^2}$"), ("X_pz", "X $p_z$"),
            ("X_pxpy", "X $p_x+p_y$"))


@dataclass(frozen=True)
class FigureInfo:
    """What every figure states: the material, the settings and the k-point sampling."""

    material: str  # "MoS2 monolayer"
    settings: str  # "paper" or "test (path_points=30)"
    scf_kmesh: int
    path_points: int = 0
    map_points: int = 0
    cutoffs: str = ""  # "45/360 Ry"

    @classmethod
    def of(cls, material: str, settings: str, preset) -> "FigureInfo":
        return cls(material, settings, preset.kmesh, preset.path_points, preset.map_points,
                   f"{preset.ecutwfc:g}/{preset.ecutrho:g} Ry")

    def line(self, what: str = "path") -> str:
        mesh = f"SCF {self.scf_kmesh}×{self.scf_kmesh}×1"
        if what == "path" and self.path_points:
            mesh += f", path {self.path_points} k"
        if what == "map" and self.map_points:
            mesh += f", map {self.map_points}×{self.map_points} grid (wedge computed)"
        return f"{self.material} · settings {self.settings} · {mesh}" + (f" · {self.cutoffs}" if self.cutoffs else "")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path, stem: str) -> list[Path]:
    """``<out>/<stem>.png`` (150 dpi) and ``.svg`` (no date: reproducible), the figure closed."""
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None})
    pyplot().close(fig)
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


def _spin_coloured(ax, x: np.ndarray, e: np.ndarray, sz: np.ndarray, lw: float = 1.2):
    """Bands (k, band) as lines coloured by <sigma_z> (blue -1 ... red +1)."""
    from matplotlib.collections import LineCollection

    norm = pyplot().Normalize(-1, 1)
    for n in range(e.shape[1]):
        pts = np.column_stack([x, e[:, n]]).reshape(-1, 1, 2)
        seg = np.concatenate([pts[:-1], pts[1:]], axis=1)
        lc = LineCollection(seg, cmap="coolwarm", norm=norm, lw=lw)
        lc.set_array(0.5 * (sz[:-1, n] + sz[1:, n]))
        ax.add_collection(lc)
    return lc


def _bands_panel(ax, soc: BandData, sr: BandData | None, window, spin_colour: bool):
    """One Fig. 2 panel; returns the CSV rows, the line handles for a legend and the colour map."""
    x, idx, labels = _path_part(soc)
    nocc = soc.n_occupied
    vbm = float(np.asarray(soc.eigenvalues)[:, nocc - 1].max())
    e_soc = np.asarray(soc.eigenvalues)[idx] - vbm
    mappable = None
    if spin_colour and soc.sigma_z is not None:
        mappable = _spin_coloured(ax, x, e_soc, np.asarray(soc.sigma_z)[idx])
        soc_handle = pyplot().Line2D([], [], color="tab:red", lw=1.2, label="with SOC (colour: ⟨σz⟩)")
    else:
        ax.plot(x, e_soc, color="k", lw=1.0)
        soc_handle = pyplot().Line2D([], [], color="k", lw=1.0, label="with SOC")
    handles = [soc_handle]
    rows = [[f"{xi:.6f}", "soc", *map(lambda v: f"{v:.5f}", e)] for xi, e in zip(x, e_soc)]
    if sr is not None:
        e_sr = np.asarray(sr.eigenvalues)[idx] - vbm
        ax.plot(x, e_sr, color="0.35", lw=0.9, ls=":")
        handles.append(pyplot().Line2D([], [], color="0.35", lw=0.9, ls=":", label="without SOC"))
        rows += [[f"{xi:.6f}", "sr", *map(lambda v: f"{v:.5f}", e)] for xi, e in zip(x, e_sr)]
    ticks = [(xi, "Γ" if l in ("G", "Gamma") else l) for xi, l in zip(x, labels) if l]
    ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks])
    for t in ticks:
        ax.axvline(t[0], color="0.75", lw=0.5)
    ax.axhline(0, color="0.5", lw=0.5, ls="--")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(*window)
    return rows, handles, mappable, e_soc.shape[1]


def fig2_bands(soc: BandData, sr: BandData | None, out: Path, info: "FigureInfo | str", window=(-3.0, 3.0),
               spin_colour: bool = True) -> list[Path]:
    """One material's Fig. 2 panel (the figures step); :func:`fig2_panels` puts several side by side."""
    if not len(_path_part(soc)[1]):
        return []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 5.2), layout="constrained")
    rows, handles, mappable, n = _bands_panel(ax, soc, sr, window, spin_colour)
    ax.set_ylabel("E − E$_{VBM}$ (eV)")
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncol=2, frameon=False)
    if mappable is not None:
        fig.colorbar(mappable, ax=ax, shrink=0.6, label="⟨σz⟩", ticks=[-1, 0, 1])
    ax.set_title(_title(info, "path"), fontsize=7)
    files = save_figure(fig, out, "fig2_bands")
    files.append(_write_csv(out / "fig2_bands.csv", ["k_path_inv_angstrom", "run", *[f"band{i + 1}_ev" for i in range(n)]],
                            rows))
    return files


def fig2_panels(panels: list[tuple["FigureInfo", BandData, BandData | None]], out: Path, stem: str = "fig2_monolayers",
                window=(-2.5, 2.5), spin_colour: bool = True) -> list[Path]:
    """The paper's Fig. 2: the monolayers side by side, one energy window, VBM at 0, spin-orbit
    bands solid (coloured by <sigma_z>), scalar-relativistic dotted; one shared legend and the
    settings and mesh of every panel.  CSV: one block per material."""
    panels = [p for p in panels if len(_path_part(p[1])[1])]
    if not panels:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 0.8, 4.6), sharey=True,
                             layout="constrained", squeeze=False)
    rows, mappable, handles = [], None, []
    for ax, (info, soc, sr) in zip(axes[0], panels):
        r, handles, m, _ = _bands_panel(ax, soc, sr, window, spin_colour)
        mappable = m or mappable
        rows += [[info.material, *row] for row in r]
        ax.set_title(re.sub(r"(\d+)", r"$_{\1}$", info.material.replace(" monolayer", "")), fontsize=11)
    axes[0, 0].set_ylabel("E − E$_{VBM}$ (eV)")
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=2, frameon=False)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[0, -1], shrink=0.6, label="⟨σz⟩", ticks=[-1, 0, 1])
    described = sorted({i.line("path").split(" · ", 1)[1] for i, _, _ in panels})
    fig.suptitle("Monolayers: " + "; ".join(described), fontsize=7)
    files = save_figure(fig, out, stem)
    width = max(len(r) for r in rows) - 3
    files.append(_write_csv(out / f"{stem}.csv", ["material", "k_path_inv_angstrom", "run",
                                                  *[f"band{i + 1}_ev" for i in range(width)]], rows))
    return files


def _title(info: "FigureInfo | str", what: str) -> str:
    return info.line(what) if isinstance(info, FigureInfo) else str(info)


def _map_note(m: "MapInterpolation") -> str:
    """What the drawn map is: computed grid, interpolated grid and the measured error."""
    drawn = (f"drawn on a {m.fine_points}×{m.fine_points} grid: Wannier model + its residual on the "
             f"{m.points}×{m.points} grid" if m.method == "wannier"
             else f"drawn on a {m.fine_points}×{m.fine_points} interpolation of the spin-resolved bands")
    if m.errors is None:
        return f"{drawn} (not validated: the map has no check points)"
    return f"{drawn}; vs {m.errors.summary()}"


def _hatching(m: "MapInterpolation | SplittingMap") -> dict[str, tuple[np.ndarray, float, str]]:
    """Per panel of an interpolated map: (field, level, what) -- hatched where field < level
    (bzinterp.hatch_fields, the criteria of bzinterp.unhatched_regions)."""
    if not isinstance(m, MapInterpolation):
        return {}
    labels = {"uvb": f"UVB > {CONTOUR_WINDOW_EV:g} eV below the VBM:\nΔ not validated to 1 meV"
                     + ("" if m.errors is None or m.errors.max_delta_mev["uvb"] <= m.errors.max_delta_uvb_window_mev
                        else f"\n(up to {m.errors.max_delta_mev['uvb']:.1f} meV at the run's checks there)"),
              "lcb": f"spin-mixed, |⟨σz⟩| < {POLARISED_SIGMA_Z:g}:\nΔ is no spin splitting there"}
    fields = hatch_fields(m.fine, valence_validated=valence_validated_everywhere(m))
    return {name: (field, level, labels[name]) for name, (field, level) in fields.items()}


def fig3_map(m: "MapInterpolation | SplittingMap", out: Path, info: "FigureInfo | str") -> list[Path]:
    """Fig. 3 from a map (tmdflow.analysis.bzinterp.map_for_figure): colours and iso-energy
    lines drawn from the interpolated fine grid, the CSV holds the directly computed points only."""
    plt = pyplot()
    import matplotlib.tri as mtri

    direct, drawn = (m.direct, m.fine) if isinstance(m, MapInterpolation) else (m, m)
    note = f"\n{_map_note(m)}" if isinstance(m, MapInterpolation) else ""
    tri = mtri.Triangulation(drawn.k_cartesian[:, 0], drawn.k_cartesian[:, 1])
    hexagon = bz_hexagon(drawn.reciprocal_cell)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8), layout="constrained")
    fig.suptitle("E(↑) − E(↓) of the band pairs (at K: UVB ±Δ$_\\mathrm{VB}$(K), LCB ∓Δ$_\\mathrm{CB}$(K), "
                 f"upper sign for ↑ at the top of the valence band)\n{_title(info, 'map')}{note}",
                 fontsize=8)
    hatched = _hatching(m)
    for ax, data, name, key in ((axes[0], drawn.delta_uvb_mev, "uppermost valence pair (UVB)", "uvb"),
                                (axes[1], drawn.delta_lcb_mev, "lowermost conduction pair (LCB)", "lcb")):
        lim = max(float(np.abs(data).max()), 1e-6)
        cs = ax.tricontourf(tri, data, levels=np.linspace(-lim, lim, 41), cmap="RdBu_r")
        if key in hatched and (hatched[key][0] < hatched[key][1]).any():
            field, below, label = hatched[key]
            with plt.rc_context({"hatch.color": "0.3", "hatch.linewidth": 0.6}):
                ax.tricontourf(tri, field, levels=[float(np.min(field)) - 1.0, below], colors="none",
                               hatches=["////"])
            if (field > below).any():
                ax.tricontour(tri, field, levels=[below], colors="0.3", linewidths=0.6, linestyles="solid")
            name = f"{name}\nhatched: {label}"
        ax.plot(hexagon[:, 0], hexagon[:, 1], color="k", lw=1.0)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=7)
        ax.set_xlabel("k$_x$ (1/Å)")
        fig.colorbar(cs, ax=ax, shrink=0.8, label="E(↑) − E(↓) (meV)", format="%.0f")
    axes[0].set_ylabel("k$_y$ (1/Å)")
    files = save_figure(fig, out, "fig3_splitting_map")
    fig, ax = plt.subplots(figsize=(4.8, 4.9), layout="constrained")
    from scipy.spatial import cKDTree

    nearest = cKDTree(drawn.k_cartesian)  # the spin of a line point: its nearest map point's
    for be in BINDING_ENERGIES_EV:
        cs = ax.tricontour(tri, drawn.uvb_energy_ev, levels=[-be], colors="none")
        for seg in (p for coll in cs.allsegs for p in coll):
            if len(seg) < 2:
                continue
            up = drawn.uvb_sigma_z[nearest.query(seg)[1]] >= 0
            # one line per run of equal spin (not one per segment): smooth curves in the SVG
            cuts = np.nonzero(np.diff(up.astype(int)))[0] + 1
            for part in np.split(np.arange(len(seg)), cuts):
                piece = seg[part[0]:min(part[-1] + 2, len(seg))]
                ax.plot(piece[:, 0], piece[:, 1], color="tab:red" if up[part[0]] else "tab:blue", lw=1.2)
    ax.plot(hexagon[:, 0], hexagon[:, 1], color="k", lw=1.0)
    ax.plot([], [], color="tab:red", label="⟨σz⟩ > 0 (↑)")
    ax.plot([], [], color="tab:blue", label="⟨σz⟩ < 0 (↓)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_aspect("equal")
    ax.set_title(f"UVB iso-energy lines at −0.2, −0.5, −0.8 eV\n{_title(info, 'map')}{note}", fontsize=6)
    ax.set_xlabel("k$_x$ (1/Å)")
    ax.set_ylabel("k$_y$ (1/Å)")
    files += save_figure(fig, out, "fig3_contours")
    files.append(_write_csv(out / "fig3_map.csv",
                            ["kx_inv_angstrom", "ky_inv_angstrom", "uvb_e_minus_vbm_ev", "uvb_sigma_z",
                             "uvb_e_up_minus_e_down_mev", "lcb_e_up_minus_e_down_mev"],
                            ([f"{a:.6f}" for a in row] for row in np.column_stack(
                                [direct.k_cartesian, direct.uvb_energy_ev, direct.uvb_sigma_z, direct.delta_uvb_mev,
                                 direct.delta_lcb_mev]))))
    return files


def draw_figures(out: Path, info: "FigureInfo", soc: BandData, sr: BandData | None,
                 drawn: "MapInterpolation | None" = None, profile: dict | None = None) -> list[Path]:
    """One material's Fig. 2 (always), Fig. 3 (a drawn map) and Fig. 4 (a Gamma-K profile) into
    ``out``: the figures step and the report's redraw from the store draw through this."""
    files = fig2_bands(soc, sr, out, info)
    if drawn is not None:
        files += fig3_map(drawn, out, info)
    if profile:
        files += fig4_gamma_k(profile, out, info)
    return files


def gamma_k_profile(soc: BandData, sr: BandData | None = None,
                    weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Along Gamma -> K (the K-Gamma segment of the path, reversed): fraction of Gamma-K;
    ``delta_vb_mev`` / ``delta_cb_mev``: Delta_VB(k) and Delta_CB(k) in Table I's sign convention
    (relative to the spin of the top valence state at K: at K they are the table's Delta_VB(K)
    and Delta_CB(K); docs/physics.md); ``delta_uvb_mev`` / ``delta_lcb_mev``: the spin-resolved
    E(up) - E(down) of the two pairs (Fig. 3's quantity); and the orbital weights of the SR
    UVB / LCB."""
    seg = path_segment(soc.labels, "K", "G")[::-1]
    if not seg or soc.sigma_z is None:  # no path, or no spin texture (spin_texture: false): no signed Delta
        return {}
    nocc = soc.n_occupied
    e, sz = np.asarray(soc.eigenvalues)[seg], np.asarray(soc.sigma_z)[seg]
    k = soc.kpoints_cartesian[seg]
    frac = np.linalg.norm(k - k[0], axis=1) / np.linalg.norm(k[-1] - k[0])
    up_down_v, up_down_c = signed_pair_splitting(e, sz, nocc - 2), signed_pair_splitting(e, sz, nocc)
    s_k = np.sign(sz[-1, nocc - 1]) or 1.0  # spin of the top valence state at K (the last point)
    out = {"fraction": frac, "delta_vb_mev": s_k * up_down_v, "delta_cb_mev": -s_k * up_down_c,
           "delta_uvb_mev": up_down_v, "delta_lcb_mev": up_down_c}
    if sr is not None and weights:
        n_sr = sr.n_occupied
        for key, _ in ORBITALS:
            w = np.asarray(weights[key])[seg]
            out[f"uvb_{key}"], out[f"lcb_{key}"] = w[:, n_sr - 1], w[:, n_sr]
    return out


FIG4_CSV_NAMES = {"fraction": "fraction_of_gamma_k", "delta_vb_mev": "delta_vb_mev", "delta_cb_mev": "delta_cb_mev",
                  "delta_uvb_mev": "uvb_e_up_minus_e_down_mev", "delta_lcb_mev": "lcb_e_up_minus_e_down_mev"}


def fig4_gamma_k(profile: dict[str, np.ndarray], out: Path, info: "FigureInfo | str") -> list[Path]:
    """Fig. 4: (a) Delta_VB(k), (b) Delta_CB(k) along Gamma-K (Table I's sign: at K the table's
    values), (c) UVB and (d) LCB orbital characters of the scalar-relativistic bands."""
    if not profile:
        return []
    plt = pyplot()
    has_w = any(k.startswith("uvb_M") for k in profile)
    rows = 2 if has_w else 1
    fig, axes = plt.subplots(rows, 2, figsize=(8.2, 3.3 * rows + 0.4), sharex=True, squeeze=False,
                             layout="constrained")
    f = profile["fraction"]
    dvb, dcb = profile.get("delta_vb_mev"), profile.get("delta_cb_mev")
    if dvb is None:  # a profile stored before Table I's sign was applied (figures documents of earlier versions)
        s_k = np.sign(profile["delta_uvb_mev"][-1]) or 1.0
        dvb, dcb = s_k * np.asarray(profile["delta_uvb_mev"]), -s_k * np.asarray(profile["delta_lcb_mev"])
    for ax, data, name, tag in ((axes[0, 0], dvb, r"Δ$_\mathrm{VB}$(k)", "(a)"),
                                (axes[0, 1], dcb, r"Δ$_\mathrm{CB}$(k)", "(b)")):
        ax.plot(f, data, "k-", lw=1.3)
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set_ylabel(f"{name} (meV)")
        ax.set_title(f"{tag} {name}; at K {data[-1]:+.1f} meV (Table I)", fontsize=9)
    if has_w:
        for ax, band, tag in ((axes[1, 0], "uvb", "(c)"), (axes[1, 1], "lcb", "(d)")):
            for key, name in ORBITALS:
                ax.plot(f, profile[f"{band}_{key}"], label=name, lw=1.2)
            ax.set_ylabel("orbital weight (no SOC)")
            ax.set_title(f"{tag} {'uppermost valence' if band == 'uvb' else 'lowermost conduction'} band", fontsize=9)
            ax.set_ylim(0, 1)
        axes[1, 0].legend(fontsize=7, ncol=2, loc="upper center")
    for ax in axes[-1]:
        ax.set_xticks([0, 0.5, 1], ["Γ", "Q", "K"])
        ax.set_xlabel("k along Γ–K")
    fig.suptitle(_title(info, "path"), fontsize=7)
    files = save_figure(fig, out, "fig4_gamma_k")
    keys = list(profile)
    files.append(_write_csv(out / "fig4_gamma_k.csv", [FIG4_CSV_NAMES.get(k, k) for k in keys],
                            ([f"{profile[k][i]:.6f}" for k in keys] for i in range(len(f)))))
    return files
