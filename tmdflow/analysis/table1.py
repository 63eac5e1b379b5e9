"""The paper's Table I and the Delta/dE table, regenerated from material documents.

Each computed number is shown with the paper's value and the deviation (ours - paper).
Formats: Markdown, CSV, LaTeX.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Iterable

from ..data import load_yaml
from ..store.documents import MaterialDocument


@dataclass(frozen=True)
class Column:
    key: str  # row dict key
    header: str
    fmt: str


COLUMNS = [
    Column("formula", "MX2", "s"), Column("settings", "settings", "s"),
    Column("ml_a", "mono a (Å)", ".3f"), Column("ml_a_paper", "paper", ".3f"), Column("ml_a_dev", "dev", "+.3f"),
    Column("ml_d", "mono d (Å)", ".3f"), Column("ml_d_paper", "paper", ".3f"), Column("ml_d_dev", "dev", "+.3f"),
    Column("bk_a", "bulk a (Å)", ".3f"), Column("bk_c", "bulk c (Å)", ".3f"),
    Column("bk_z", "bulk z", ".4f"), Column("bk_z_paper", "paper", ".3f"), Column("bk_z_dev", "dev", "+.4f"),
    Column("dvb", "Δ_VB(K) (meV)", ".1f"), Column("dvb_err", "±", ".1f"),
    Column("dvb_paper", "paper", ".0f"), Column("dvb_dev", "dev", "+.1f"),
    Column("dcb", "Δ_CB(K) (meV)", "+.1f"), Column("dcb_err", "±", ".1f"),
    Column("dgk", "δE_Γ-K (meV)", ".1f"), Column("dgk_err", "±", ".1f"),
    Column("dgk_paper", "paper", ".0f"), Column("dgk_dev", "dev", "+.1f"),
    Column("gap", "gap (eV)", ".3f"), Column("gap_type", "gap type", "s"),
    Column("bk_gap", "bulk gap (eV)", ".3f"), Column("bk_edges", "bulk band edges", "s"),
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
                       gap=s.gap_ev, gap_type="direct at K" if s.direct_gap_at_k
                       else f"indirect ({s.vbm_location}->{s.cbm_location})")
        bars = (error_bars or {}).get(ml.material_id) if ml else None
        if ml and bars:
            row.update(dvb_err=bars.get("delta_vb_k_mev"), dcb_err=bars.get("delta_cb_k_mev") if row.get("dcb") is not None
                       else None, dgk_err=bars.get("delta_e_gamma_k_mev"))
        if bk:
            row.update(bk_a=bk.table1.a_angstrom, bk_c=bk.table1.c_angstrom, bk_z=bk.table1.z)
            if bk.splitting is not None:
                b = bk.splitting
                row.update(bk_gap=b.gap_ev, bk_edges="direct at K" if b.direct_gap_at_k
                           else f"VBM {b.vbm_location}, CBM {b.cbm_location}")
        row.update(ml_a_paper=ref.get("monolayer_a"), ml_d_paper=ref.get("monolayer_d"),
                   bk_z_paper=ref.get("bulk_z"), dvb_paper=ref.get("delta_vb_k"), dgk_paper=ref.get("delta_e_gamma_k"))
        for k in ("ml_a", "ml_d", "bk_z", "dvb", "dgk"):
            row[f"{k}_dev"] = _dev(row.get(k), row.get(f"{k}_paper"))
        rows.append(row)
    return rows


def _cell(row: dict, col: Column) -> str:
    v = row.get(col.key)
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) < 1e-9:
        v = 0.0  # no "-0.000" from rounding noise
    return format(v, col.fmt) if col.fmt != "s" else str(v)


def render(rows: list[dict], fmt: str = "markdown") -> str:
    if fmt == "markdown":
        lines = ["| " + " | ".join(c.header for c in COLUMNS) + " |",
                 "|" + "|".join("---" for _ in COLUMNS) + "|"]
        lines += ["| " + " | ".join(_cell(r, c) for c in COLUMNS) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([c.key for c in COLUMNS])
        for r in rows:
            w.writerow(["" if r.get(c.key) is None else r.get(c.key) for c in COLUMNS])
        return buf.getvalue()
    if fmt == "latex":
        esc = {"Δ": r"$\Delta$", "δ": r"$\delta$", "Γ": r"$\Gamma$", "Å": r"\AA{}", "_": r"\_"}

        def tex(s: str) -> str:
            for a, b in esc.items():
                s = s.replace(a, b)
            return s.replace("->", r"$\to$")

        lines = [r"\begin{tabular}{l" + "r" * (len(COLUMNS) - 1) + "}", r"\hline",
                 " & ".join(tex(c.header) for c in COLUMNS) + r" \\", r"\hline"]
        lines += [" & ".join(tex(_cell(r, c)) for c in COLUMNS) + r" \\" for r in rows]
        lines += [r"\hline", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt}")
