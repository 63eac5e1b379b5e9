"""Table I from several methods side by side: ``tmdflow table1 --compare espresso,elk``.

For each monolayer: Delta_VB(K), Delta_CB(K) (signed as in ``table1``: + when the lower
conduction state at K has the spin of the upper valence state), dE(Gamma-K) and the gap of every
method in the store, beside the paper's values, each with its error bar and where that bar came
from.

* A **method** is a calculator with its spin-orbit treatment: Quantum ESPRESSO's
  ``spin_orbit_mode`` ``scf`` (fully relativistic, self-consistent) or ``second_variational``
  (spin-orbit on the scalar-relativistic density); Elk and WIEN2k are all-electron,
  second-variational (:func:`method_of`).
* Results of one method computed with different settings (preset and overrides: the result's
  ``settings_label``) are **never merged**: each is its own row, labelled with its settings; two
  results with the same label (other pseudopotential files or structure) are told apart by their
  id's hash, as in ``table1``.
* **Error bars**, in this order: the convergence studies stored in the database that apply to the
  result (``tmdflow.convergence.error_bars_apply``: same code, same pseudopotentials / muffin-tin
  radius, settings at least the study's converged ones; the largest when several apply); else the
  measured studies of :data:`MEASURED_ERROR_BARS` (convergence runs recorded in docs/physics.md,
  cited), under the same rule; else none.  Each row names its source.

Plain functions over material documents; the store is read only by :func:`comparison_table`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .analysis.table_render import FORMATS, Column, render_table, shown_text, tex_escape
from .analysis.vocabulary import gap_type_of, latex_location
from .convergence import QUANTITIES, error_bars_apply
from .data import load_yaml
from .errors import InputError
from .materials import parse_formula
from .store.documents import ConvergenceDoc, MaterialDocument

ALL_ELECTRON = ("elk", "wien2k")
#: QE's spin_orbit_mode -> how spin-orbit coupling enters
QE_SPIN_ORBIT = {"scf": "fully relativistic, self-consistent", "second_variational": "second-variational"}
CODE_NAMES = {"espresso": "QE", "elk": "Elk", "wien2k": "WIEN2k"}


@dataclass(frozen=True)
class Method:
    """A calculator with its spin-orbit treatment (and what it treats the cores with)."""

    calculator: str
    spin_orbit: str  # "fully relativistic, self-consistent" or "second-variational"
    basis: str  # "pseudopotentials" or "all-electron"

    @property
    def label(self) -> str:
        """e.g. ``QE FR scf`` / ``QE second-var.`` / ``Elk all-electron second-var.``"""
        code = CODE_NAMES.get(self.calculator, self.calculator)
        soc = "FR scf" if self.spin_orbit.startswith("fully") else "second-var."
        return f"{code} all-electron {soc}" if self.basis == "all-electron" else f"{code} {soc}"

    def sort_key(self, calculators: Sequence[str]) -> tuple:
        order = list(calculators).index(self.calculator) if self.calculator in calculators else len(calculators)
        return order, not self.spin_orbit.startswith("fully"), self.spin_orbit


def method_of(material: MaterialDocument) -> Method:
    """The method of a stored result.  Elk and WIEN2k add spin-orbit coupling in the second
    variation of an all-electron calculation whatever ``spin_orbit_mode`` says (a QE preset key
    that their presets inherit); QE's mode is the method."""
    if material.calculator in ALL_ELECTRON:
        return Method(material.calculator, "second-variational", "all-electron")
    if material.calculator == "espresso":
        if material.spin_orbit_mode not in QE_SPIN_ORBIT:
            raise InputError(f"result {material.material_id} has spin_orbit_mode '{material.spin_orbit_mode}'",
                             f"tmdflow knows {sorted(QE_SPIN_ORBIT)}; re-run its workflow")
        return Method("espresso", QE_SPIN_ORBIT[material.spin_orbit_mode], "pseudopotentials")
    return Method(material.calculator, material.spin_orbit_mode, "")


@dataclass(frozen=True)
class MeasuredErrorBars:
    """A convergence study measured and recorded in docs (not in a store): the settings it was
    measured from (as a convergence study's ``study_settings``), the change of each quantity at
    one step of each parameter (meV; the error bar is their root-sum-square, as
    ``tmdflow.convergence.converge`` computes it) and where it is written down."""

    calculator: str
    formula: str
    study_settings: dict
    changes_mev: dict  # parameter step -> (dVB, dCB, dE(Gamma-K)) change, meV
    source: str  # short citation, shown in the table
    detail: str = ""  # the longer citation of the legend

    @property
    def error_bars_mev(self) -> dict[str, float]:
        return {q: math.sqrt(sum(c[i] ** 2 for c in self.changes_mev.values())) for i, q in enumerate(QUANTITIES)}


_QE_QUICK = {"ecutwfc": 45.0, "ecutrho": 360.0, "kmesh": 6, "vacuum": 15.0, "pseudo_family": "pslibrary-paw",
             "element_pseudo_families": {}, "spin_orbit_mode": "scf"}
_QE_SOURCE = "docs/physics.md, Error bars"
_QE_DETAIL = ("workflows/convergence.yaml from the quick preset (session 5): 45->60 Ry, 6->9 k, 15->20 A, "
              "pslibrary-paw, spin_orbit_mode scf")
_ELK_QUICK = {"elk_rgkmax": 7.0, "elk_nempty": 4, "elk_lmaxapw": 8, "kmesh": 6, "vacuum": 15.0, "elk_rmt": 2.1,
              "elk_gmaxvr": 12.0}
_ELK_SOURCE = "docs/physics.md, Elk's own convergence"
_ELK_DETAIL = ("issue 25's hand runs (lmaxapw 10) and the elk-quick runs: rgkmax 7->8, empty states 4 -> 64 per "
               "atom (at rgkmax 9), lmaxapw 8->10, k 6->12, vacuum 15->20 A; R_mt 2.1 bohr")

#: Measured convergence studies (docs/physics.md), used where the store holds no study that applies.
#: QE: the four-monolayer study of the quick preset; its changes are the rounded error bars of
#: the table there, one entry per quantity (the per-step changes are in the stored documents of
#: that run, not in the docs).  Elk: WSe2 only (the one monolayer with all five parameters measured).
MEASURED_ERROR_BARS: tuple[MeasuredErrorBars, ...] = (
    *(MeasuredErrorBars("espresso", formula, _QE_QUICK, {"root-sum-square (45->60 Ry, 6->9 k, 15->20 A)": bars},
                        _QE_SOURCE, _QE_DETAIL)
      for formula, bars in (("MoS2", (0.10, 0.01, 1.55)), ("MoSe2", (0.07, 0.02, 1.83)),
                            ("WS2", (0.07, 0.01, 1.86)), ("WSe2", (0.08, 0.02, 1.70)))),
    MeasuredErrorBars("elk", "WSe2", _ELK_QUICK,
                      {"elk_rgkmax 7->8": (2.9, 0.9, 3.6), "elk_nempty 4->64 (at rgkmax 9)": (2.4, 1.6, 2.1),
                       "elk_lmaxapw 8->10": (0.1, 0.8, 1.0), "kmesh 6->12": (0.0, 0.0, 1.9),
                       "vacuum 15->20": (0.1, 0.7, 10.5)},
                      _ELK_SOURCE, _ELK_DETAIL),
)


@dataclass(frozen=True)
class ErrorBars:
    values_mev: dict[str, float] | None  # quantity -> meV; None: no study applies
    source: str  # "store: <convergence_id>[; ...]", "measured: <citation>" or "none"


@dataclass(frozen=True)
class Study:
    """A convergence study stored in the database, as the comparison uses it."""

    convergence_id: str
    formula: str
    settings: dict  # ConvergenceDoc.study_settings()
    error_bars_mev: dict[str, float]

    @classmethod
    def from_document(cls, doc: ConvergenceDoc) -> "Study":
        return cls(doc.convergence_id, doc.formula, doc.study_settings(), dict(doc.error_bars_mev))


def error_bars_of(material: MaterialDocument, result_settings: dict, studies: Iterable[Study],
                  measured: Iterable[MeasuredErrorBars] = MEASURED_ERROR_BARS) -> ErrorBars:
    """The error bars of one result and their source: the stored ``studies`` that apply (the
    largest bar per quantity), else the ``measured`` ones that apply, else none."""
    elements = parse_formula(material.formula)

    def largest(applied: list[tuple[str, dict]]) -> ErrorBars | None:
        if not applied:
            return None
        values = {q: max(float(b[q]) for _, b in applied if q in b) for q in QUANTITIES
                  if any(q in b for _, b in applied)}
        return ErrorBars(values, "; ".join(name for name, _ in applied))

    stored = [(f"store: {s.convergence_id}", s.error_bars_mev) for s in studies
              if s.formula == material.formula
              and error_bars_apply(s.settings, result_settings, elements, material.calculator)]
    found = largest(stored)
    if found is None:
        found = largest([(f"measured: {m.source}", m.error_bars_mev) for m in measured
                         if m.calculator == material.calculator and m.formula == material.formula
                         and error_bars_apply(m.study_settings, result_settings, elements, material.calculator)])
    return found or ErrorBars(None, "none")


def parse_calculators(text: str | Sequence[str], known: Sequence[str]) -> list[str]:
    """``espresso,elk`` -> ``["espresso", "elk"]`` (order kept, duplicates dropped); an unknown
    name is an InputError naming the known ones."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise InputError("--compare names no calculator", f"e.g. --compare espresso,elk (known: {', '.join(known)})")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown calculator {', '.join(repr(n) for n in unknown)} in --compare",
                         f"choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


@dataclass
class ComparisonRow:
    formula: str
    method: str  # Method.label, or "paper (WIEN2k)"
    settings: str  # the result's settings label (preset and overrides)
    values: dict = field(default_factory=dict)  # Column.key -> value
    material_id: str | None = None


COLUMNS = [
    Column("formula", "MX2", "s", "formula", "MX$_2$"),
    Column("method", "method", "s", "method", "method"),
    Column("settings", "settings", "s", "settings", "settings"),
    Column("dvb", "Δ_VB(K) (meV)", ".1f", "delta_vb_k_mev", r"$\Delta_{\mathrm{VB}}(K)$ (meV)"),
    Column("dvb_err", "±", ".1f", "delta_vb_k_error_bar_mev", r"$\pm$"),
    Column("dvb_dev", "dev", "+.1f", "delta_vb_k_deviation_mev", "dev."),
    Column("dcb", "Δ_CB(K) (meV)", "+.1f", "delta_cb_k_mev", r"$\Delta_{\mathrm{CB}}(K)$ (meV)"),
    Column("dcb_err", "±", ".1f", "delta_cb_k_error_bar_mev", r"$\pm$"),
    Column("dgk", "δE_Γ-K (meV)", ".1f", "delta_e_gamma_k_mev", r"$\delta E_{\Gamma K}$ (meV)"),
    Column("dgk_err", "±", ".1f", "delta_e_gamma_k_error_bar_mev", r"$\pm$"),
    Column("dgk_dev", "dev", "+.1f", "delta_e_gamma_k_deviation_mev", "dev."),
    Column("gap", "gap (eV)", ".3f", "monolayer_gap_ev", "gap (eV)"),
    Column("gap_type", "gap type", "s", "monolayer_gap_type", "gap type"),
    Column("bar_source", "± from", "s", "error_bar_source", r"$\pm$ from"),
]
PAPER_METHOD = "paper (WIEN2k)"


def comparison_rows(materials: Iterable[MaterialDocument], calculators: Sequence[str],
                    result_settings, studies: Iterable[Study] = (),
                    measured: Iterable[MeasuredErrorBars] = MEASURED_ERROR_BARS,
                    preset: str | None = None) -> list[ComparisonRow]:
    """The rows of the comparison: per monolayer formula, the paper's row, then one row per method
    and settings of the ``calculators`` (in that order; QE's self-consistent mode before its
    second-variational one).  ``result_settings``: material -> the preset dict it ran with
    (``ResultsStore.result_settings``).  Bulk results are left out (Table I's Delta are monolayer
    numbers)."""
    paper = load_yaml("paper_zhu2011.yaml")["materials"]
    studies = list(studies)
    measured = list(measured)
    selected = [m for m in materials if m.dimensionality == "monolayer" and m.calculator in calculators
                and not (preset and m.preset != preset)]
    labels: dict[tuple[str, Method, str], list[MaterialDocument]] = {}
    for m in selected:
        labels.setdefault((m.formula, method_of(m), m.settings_label), []).append(m)
    rows: list[ComparisonRow] = []
    for formula in sorted({f for f, _, _ in labels}):
        ref = paper.get(formula, {})
        if ref:
            rows.append(ComparisonRow(formula, PAPER_METHOD, "Zhu et al. 2011",
                                      {"dvb": ref.get("delta_vb_k"), "dgk": ref.get("delta_e_gamma_k")}))
        keys = sorted((k for k in labels if k[0] == formula), key=lambda k: (k[1].sort_key(calculators), k[2]))
        for _, method, label in keys:
            docs = sorted(labels[formula, method, label], key=lambda d: d.material_id)
            for doc in docs:
                shown = label if len(docs) == 1 else f"{label} [{doc.material_id.rsplit('-', 1)[-1]}]"
                rows.append(_row(doc, method, shown, ref, error_bars_of(doc, result_settings(doc), studies, measured)))
    return rows


def _row(doc: MaterialDocument, method: Method, label: str, ref: dict, bars: ErrorBars) -> ComparisonRow:
    s = doc.splitting
    dcb = s.delta_cb_k_mev if s.delta_cb_sign_known else None
    v = {"dvb": s.delta_vb_k_mev, "dcb": dcb, "dgk": s.delta_e_gamma_k_mev, "gap": s.gap_ev,
         "gap_type": gap_type_of(s), "bar_source": bars.source}
    if bars.values_mev:
        v.update(dvb_err=bars.values_mev.get("delta_vb_k_mev"), dgk_err=bars.values_mev.get("delta_e_gamma_k_mev"),
                 dcb_err=bars.values_mev.get("delta_cb_k_mev") if dcb is not None else None)
    for key, paper_key in (("dvb", "delta_vb_k"), ("dgk", "delta_e_gamma_k")):
        if v.get(key) is not None and ref.get(paper_key) is not None:
            v[f"{key}_dev"] = v[key] - ref[paper_key]
    return ComparisonRow(doc.formula, method.label, label, v, doc.material_id)


def _get(row: ComparisonRow, key: str):
    return {"formula": row.formula, "method": row.method, "settings": row.settings}.get(key, row.values.get(key))


def _shown(row: ComparisonRow, col: Column) -> str:
    return shown_text(_get(row, col.key), col)


def legend(rows: Sequence[ComparisonRow], measured: Iterable[MeasuredErrorBars] = MEASURED_ERROR_BARS) -> list[str]:
    """One line per error-bar source used in ``rows``: what each measured source is."""
    used = {part.strip() for r in rows for part in str(r.values.get("bar_source", "")).split(";")}
    lines = []
    for source, detail in {(m.source, m.detail) for m in measured}:
        if f"measured: {source}" in used:
            lines.append(f"measured: {source}: {detail}")
    if any(u.startswith("store: ") for u in used):
        lines.append("store: a convergence study in this store (tmdflow submit workflows/convergence.yaml "
                     "or workflows/elk-convergence.yaml)")
    if "none" in used:
        lines.append("none: no convergence study applies to these settings")
    return sorted(lines)


def render_comparison(rows: Sequence[ComparisonRow], fmt: str = "markdown") -> str:
    """Markdown (with the error-bar legend below), CSV and JSON (names with units, values rounded
    as shown, ``error_bar_source`` per row), or a LaTeX tabular."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    text = render_table(rows, COLUMNS, fmt, _get, _latex_cell, "lll" + "r" * (len(COLUMNS) - 5) + "ll")
    notes = legend(rows) if fmt == "markdown" else []
    if notes:
        text += "\n".join(["", "Error bars (±): " + notes[0], *(f"  {n}" for n in notes[1:])]) + "\n"
    return text


def _latex_cell(row: ComparisonRow, col: Column) -> str:
    text = _shown(row, col)
    if text == "-":
        return "--"
    if col.key == "formula":
        return re.sub(r"(\d+)", r"$_{\1}$", text)
    if col.key == "gap_type":
        return latex_location(tex_escape(text))
    if col.fmt == "s":
        return tex_escape(text).replace("Γ", r"$\Gamma$").replace("′", "'")
    return f"${text}$"


def comparison_table(calculators: str | Sequence[str], fmt: str = "markdown", preset: str | None = None,
                     settings=None) -> str:
    """``tmdflow table1 --compare``: the comparison of the store's results (read only)."""
    from .calculators import registered_calculators
    from .settings import load_settings
    from .store.connection import connect
    from .store.results import MaterialQuery, ResultsStore

    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    names = parse_calculators(calculators, registered_calculators())
    store = ResultsStore(connect(settings or load_settings(), readonly=True).db)
    materials = store.materials(MaterialQuery(dimensionality="monolayer"))
    studies = [Study.from_document(d) for d in store.convergence()]
    rows = comparison_rows(materials, names, store.result_settings, studies, preset=preset)
    return render_comparison(rows, fmt)
