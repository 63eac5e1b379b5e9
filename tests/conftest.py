"""Shared test helpers.  Tests marked ``qe`` run real Quantum ESPRESSO executables; the README's
test command installs them, so a missing pw.x is a failure there, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
QE67 = FIXTURES / "qe-6.7"


@pytest.fixture(scope="session")
def pseudo_dir() -> Path:
    """The shared generated-pseudopotential cache (scripts/bootstrap.sh fills it)."""
    from tmdflow.settings import load_settings

    return load_settings().pseudo_dir


@pytest.fixture
def qe_settings(tmp_path, pseudo_dir):
    from tmdflow.settings import load_settings

    return load_settings(work_dir=tmp_path, pseudo_dir=pseudo_dir, nprocs=min(2, os.cpu_count() or 1))
