"""Rendering a table of results as Markdown, CSV, JSON or a LaTeX tabular, whatever its rows are:
Table I (:mod:`tmdflow.analysis.table1`) and the methods side by side (:mod:`tmdflow.compare`).

A table is a list of :class:`Column` and rows of any type; the caller says how a row's value is
found (``get``), how a LaTeX cell is written and how the tabular's columns align.  Markdown shows
each value formatted as the column says (no ``-0.0``), CSV and JSON name each value with its unit
(:attr:`Column.name`) and round it to the decimals the table shows."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

FORMATS = ("markdown", "csv", "json", "latex")

Row = TypeVar("Row")


@dataclass(frozen=True)
class Column:
    key: str  # row dict key
    header: str  # Markdown / HTML heading
    fmt: str  # format of the shown value; also the rounding of CSV and JSON values
    name: str  # CSV / JSON name: what it is, with its unit
    latex: str  # LaTeX heading (math in $...$)


def shown_text(value: Any, col: Column) -> str:
    """A cell as plain text: "-" where the row has no value, a number as ``col.fmt`` formats it
    (no "-0.000" from rounding noise)."""
    if value is None:
        return "-"
    if col.fmt == "s":
        return str(value)
    v = float(value)
    return format(0.0 if abs(v) < 1e-9 else v, col.fmt)


def shown_value(value: Any, col: Column):
    """The value as CSV and JSON give it: rounded to the decimals the table shows (no
    ``-2.220446049250313e-16``, no ``-0.0``), None when absent."""
    if value is None or col.fmt == "s":
        return value
    decimals = int(col.fmt.lstrip("+").lstrip(".").rstrip("f"))
    return round(float(value), decimals) + 0.0  # + 0.0: -0.0 -> 0.0


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Plain text for LaTeX: its special characters escaped (non-ASCII left to the caller)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def render_table(rows: Sequence[Row], columns: Sequence[Column], fmt: str, get: Callable[[Row, str], Any],
                 latex_cell: Callable[[Row, Column], str], latex_align: str) -> str:
    """``rows`` in ``fmt`` (one of :data:`FORMATS`; else ValueError): ``get(row, key)`` is a
    row's value of a column, ``latex_cell`` its LaTeX cell, ``latex_align`` the tabular's column
    specification (``"llrr"``)."""
    if fmt == "markdown":
        lines = ["| " + " | ".join(c.header for c in columns) + " |",
                 "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(shown_text(get(r, c.key), c) for c in columns) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([c.name for c in columns])
        for r in rows:
            values = [shown_value(get(r, c.key), c) for c in columns]
            w.writerow(["" if v is None else v for v in values])
        return buf.getvalue()
    if fmt == "json":
        return json.dumps([{c.name: shown_value(get(r, c.key), c) for c in columns} for r in rows], indent=2) + "\n"
    if fmt == "latex":
        lines = [r"\begin{tabular}{" + latex_align + "}", r"\hline",
                 " & ".join(c.latex for c in columns) + r" \\", r"\hline"]
        lines += [" & ".join(latex_cell(r, c) for c in columns) + r" \\" for r in rows]
        lines += [r"\hline", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
