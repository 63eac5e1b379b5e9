"""The paper's Table I and the Delta/dE table, regenerated from material documents.

Each computed number is shown with the paper's value and the deviation (ours - paper).
Formats: Markdown, CSV, JSON, LaTeX (:func:`render`).
"""

from __future__ import annotations

import re
from typing import Iterable

from ..data import load_yaml
from ..store.documents import MaterialDocument
from .table_render import Column, render_table, shown_text, tex_escape
from .vocabulary import gap_type_of, latex_location


_A, _MEV = r"(\AA)", "(meV)"
COLUMNS = [
    Column("formula", "MX2", "s", "formula", "MX$_2$"),
    Column("settings", "settings", "s", "settings", "settings"),
    Column("ml_a", "mono a (Å)", ".3f", "monolayer_a_angstrom", f"mono. $a$ {_A}"),
    Column("ml_a_paper", "paper", ".3f", "monolayer_a_paper_angstrom", "paper"),
    Column("ml_a_dev", "dev", "+.3f", "monolayer_a_deviation_angstrom", "dev."),
    Column("ml_d", "mono d (Å)", ".3f", "monolayer_d_angstrom", f"mono. $d$ {_A}"),
    Column("ml_d_paper", "paper", ".3f", "monolayer_d_paper_angstrom", "paper"),
    Column("ml_d_dev", "dev", "+.3f", "monolayer_d_deviation_angstrom", "dev."),
    Column("bk_a", "bulk a (Å)", ".3f", "bulk_a_angstrom", f"bulk $a$ {_A}"),
    Column("bk_c", "bulk c (Å)", ".3f", "bulk_c_angstrom", f"bulk $c$ {_A}"),
    Column("bk_z", "bulk z", ".4f", "bulk_z_in_units_of_c", "bulk $z$"),
    Column("bk_z_paper", "paper", ".3f", "bulk_z_paper_in_units_of_c", "paper"),
    Column("bk_z_dev", "dev", "+.4f", "bulk_z_deviation_in_units_of_c", "dev."),
    Column("dvb", "Δ_VB(K) (meV)", ".1f", "delta_vb_k_mev", r"$\Delta_{\mathrm{VB}}(K)$ " + _MEV),
    Column("dvb_err", "±", ".1f", "delta_vb_k_error_bar_mev", r"$\pm$"),
    Column("dvb_paper", "paper", ".0f", "delta_vb_k_paper_mev", "paper"),
    Column("dvb_dev", "dev", "+.1f", "delta_vb_k_deviation_mev", "dev."),
    Column("dcb", "Δ_CB(K) (meV)", "+.1f", "delta_cb_k_mev", r"$\Delta_{\mathrm{CB}}(K)$ " + _MEV),
    Column("dcb_err", "±", ".1f", "delta_cb_k_error_bar_mev", r"$\pm$"),
    Column("dgk", "δE_Γ-K (meV)", ".1f", "delta_e_gamma_k_mev", r"$\delta E_{\Gamma K}$ " + _MEV),
    Column("dgk_err", "±", ".1f", "delta_e_gamma_k_error_bar_mev", r"$\pm$"),
    Column("dgk_paper", "paper", ".0f", "delta_e_gamma_k_paper_mev", "paper"),
    Column("dgk_dev", "dev", "+.1f", "delta_e_gamma_k_deviation_mev", "dev."),
    Column("gap", "gap (eV)", ".3f", "monolayer_gap_ev", "gap (eV)"),
    Column("gap_type", "gap type", "s", "monolayer_gap_type", "gap type"),
    Column("bk_gap", "bulk gap (eV)", ".3f", "bulk_gap_ev", "bulk gap (eV)"),
    Column("bk_edges", "bulk band edges", "s", "bulk_gap_type", "bulk gap type"),
]


def _dev(ours, ref):
    return None if ours is None or ref is None else ours - ref


def table1_rows(materials: Iterable[MaterialDocument], preset: str | None = None,
                calculator: str | None = None, error_bars: dict[str, dict[str, float]] | None = None) -> list[dict]:
    """One row per material, code and settings; rows of codes other than Quantum ESPRESSO are
    labelled ``MoS2 (wien2k)``, and the ``settings`` column names the preset with the overrides
    a row was computed with, so results of different settings are never mixed in one row (a
    monolayer and a bulk share a row when their settings do).  ``error_bars``: monolayer
    material_id -> quantity -> meV, from the convergence studies that apply to it (shown in the ±
    columns of the monolayer numbers)."""
    paper = load_yaml("paper_zhu2011.yaml")["materials"]
    selected = [m for m in materials
                if not (preset and m.preset != preset) and not (calculator and m.calculator != calculator)]
    by_formula: dict[tuple[str, str, str], dict[str, MaterialDocument]] = {}
    for m in selected:
        by_formula.setdefault((m.formula, m.calculator, m.settings_label), {}).setdefault(m.dimensionality, [])
        by_formula[m.formula, m.calculator, m.settings_label][m.dimensionality].append(m)
    groups: dict[tuple[str, str, str], dict[str, MaterialDocument]] = {}
    for (formula, code, label), dims in by_formula.items():
        if all(len(docs) == 1 for docs in dims.values()):
            groups[formula, code, label] = {dim: docs[0] for dim, docs in dims.items()}
            continue
        # the same settings label for different results (other pseudopotential files or
        # structure): one row each, told apart by the id's hash
        for dim, docs in dims.items():
            for doc in docs:
                groups[formula, code, f"{label} [{doc.material_id.rsplit('-', 1)[-1]}]"] = {dim: doc}
    rows = []
    for formula, code, label in sorted(groups):
        ml, bk = groups[formula, code, label].get("monolayer"), groups[formula, code, label].get("bulk")
        ref = paper.get(formula, {})
        row: dict = {"formula": formula if code == "espresso" else f"{formula} ({code})", "settings": label}
        if ml:
            s = ml.splitting
            row.update(ml_a=ml.table1.a_angstrom, ml_d=ml.table1.d_angstrom, dvb=s.delta_vb_k_mev,
                       dcb=s.delta_cb_k_mev if s.delta_cb_sign_known else None, dgk=s.delta_e_gamma_k_mev,
                       gap=s.gap_ev, gap_type=gap_type_of(s))
        bars = (error_bars or {}).get(ml.material_id) if ml else None
        if ml and bars:
            row.update(dvb_err=bars.get("delta_vb_k_mev"), dcb_err=bars.get("delta_cb_k_mev") if row.get("dcb") is not None
                       else None, dgk_err=bars.get("delta_e_gamma_k_mev"))
        if bk:
            row.update(bk_a=bk.table1.a_angstrom, bk_c=bk.table1.c_angstrom, bk_z=bk.table1.z)
            if bk.splitting is not None:
                b = bk.splitting
                row.update(bk_gap=b.gap_ev, bk_edges=gap_type_of(b))
        row.update(ml_a_paper=ref.get("monolayer_a"), ml_d_paper=ref.get("monolayer_d"),
                   bk_z_paper=ref.get("bulk_z"), dvb_paper=ref.get("delta_vb_k"), dgk_paper=ref.get("delta_e_gamma_k"))
        for k in ("ml_a", "ml_d", "bk_z", "dvb", "dgk"):
            row[f"{k}_dev"] = _dev(row.get(k), row.get(f"{k}_paper"))
        rows.append(row)
    return rows


def cell_text(row: dict, col: Column) -> str:
    """One Table I cell as plain text ("-" where the row has no value)."""
    return shown_text(row.get(col.key), col)


def _tex_text(text: str) -> str:
    """Plain text for LaTeX: its special characters escaped, non-ASCII spelled in LaTeX."""
    out = tex_escape(text)
    return out.replace("Å", r"\AA{}").replace("±", r"$\pm$").replace("→", r"$\to$").replace("–", "--")


def _tex_cell(row: dict, col: Column) -> str:
    v = row.get(col.key)
    if v is None:
        return "--"
    if col.key == "formula":  # MoS2 (wien2k) -> MoS$_2$ (wien2k)
        formula, _, rest = str(v).partition(" ")
        return re.sub(r"(\d+)", r"$_{\1}$", formula) + (" " + _tex_text(rest) if rest else "")
    if col.key in ("gap_type", "bk_edges"):
        return latex_location(_tex_text(str(v)))
    if col.fmt == "s":
        return _tex_text(str(v))
    return f"${cell_text(row, col)}$"  # math mode: a real minus sign


def render(rows: list[dict], fmt: str = "markdown") -> str:
    """Table I as Markdown, CSV, JSON (a list of objects) or a LaTeX tabular.

    CSV and JSON name each value with its unit (``delta_vb_k_mev``, ``monolayer_a_angstrom``;
    :data:`COLUMNS`) and round it to the decimals the table shows; missing values are empty
    (CSV) or null (JSON)."""
    return render_table(rows, COLUMNS, fmt, dict.get, _tex_cell, "ll" + "r" * (len(COLUMNS) - 2))
