"""Plain-text tables of splitting results beside the paper's values."""

from __future__ import annotations

from typing import Iterable

from .analysis.paper import paper_citation, paper_values
from .analysis.splitting import SplittingResult
from .analysis.vocabulary import gap_type_of


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def splitting_rows(items: Iterable[tuple[str, SplittingResult]]) -> list[list[str]]:
    rows = []
    for formula, s in items:
        ref = paper_values(formula)
        rows.append([
            formula,
            _num(s.delta_vb_k_mev, ".1f"),
            _num(ref.delta_vb_k_mev if ref else None, ".0f"),
            (_num(s.delta_cb_k_mev, "+.1f") if s.delta_cb_sign_known else f"|{s.delta_cb_k_mev:.1f}|"),
            _num(s.delta_e_gamma_k_mev, ".1f"),
            _num(ref.delta_e_gamma_k_mev if ref else None, ".0f"),
            _num(s.gap_ev, ".3f"),
            gap_type_of(s),
        ])
    return rows


HEADERS = ["MX2", "Δ_VB(K) meV", "paper", "Δ_CB(K) meV", "δE_Γ-K meV", "paper", "gap eV", "gap type"]


def format_table(rows: list[list[str]], headers: list[str] = HEADERS) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def splitting_table(items: Iterable[tuple[str, SplittingResult]]) -> str:
    return format_table(splitting_rows(items)) + f"\npaper: {paper_citation()}"
