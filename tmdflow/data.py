"""Locate the data files shipped in ``inputs/`` (materials, presets, recipes, paper values)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError


def inputs_dir() -> Path:
    """The ``inputs/`` directory: ``$TMDFLOW_INPUTS`` or the one beside the package."""
    env = os.environ.get("TMDFLOW_INPUTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "inputs", here / "_inputs"):
        if candidate.is_dir():
            return candidate
    raise InputError(
        "cannot find tmdflow's inputs/ directory",
        "install tmdflow from its source tree (pip install -e .) or set TMDFLOW_INPUTS",
    )


@lru_cache(maxsize=None)
def _load_yaml_cached(path: str, mtime: float) -> Any:
    with open(path) as fh:
        return yaml.safe_load(fh)


def load_yaml(relative: str) -> Any:
    """Load ``inputs/<relative>``; raises InputError naming the file when missing."""
    path = inputs_dir() / relative
    if not path.is_file():
        raise InputError(f"data file {path} not found", "check the name or your TMDFLOW_INPUTS")
    return _load_yaml_cached(str(path), path.stat().st_mtime)
