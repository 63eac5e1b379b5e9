"""What the one-parameter benchmarks share (relax_vacuum.py, scf_davidson.py): run once per value
of the parameter, then print a table with one line per value, compared with the first value's run.

Imported by the scripts beside it (``.venv/bin/python bench/<script>.py`` puts bench/ on the path).
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

Value = TypeVar("Value")


def print_sweep(values: Sequence[Value], run_once: Callable[[Value], dict], header: str,
                line: Callable[[Value, dict, dict], str]) -> None:
    """Run ``run_once`` at every value (all before printing), then print ``header`` and
    ``line(value, run, reference)`` per value, the reference being the first value's run."""
    rows = [(v, run_once(v)) for v in values]
    reference = rows[0][1]
    print(header)
    for v, run in rows:
        print(line(v, run, reference))
