"""The Elk adapter in the registry and the workflow layer (nothing runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmdflow.calculators import get_calculator, registered_calculators
from tmdflow.steps.registry import for_calculator as supported_steps
from tmdflow.errors import InputError
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings
from tmdflow.workflow_spec import load_workflow
from tests.helpers import ROOT

ROOT = ROOT


def test_registered_all_electron_with_relax():
    assert "elk" in registered_calculators()
    assert supported_steps("elk") == ("relax", "scf_sr", "scf_soc", "bands_soc", "analysis")
    calc = get_calculator("elk", load_settings(env={"TMDFLOW_CONFIG": "/dev/null", "TMDFLOW_ELK_THREADS": "3"}))
    assert not calc.uses_pseudopotentials and calc.profile.omp_threads == 3
    assert calc.case_directory(Path("r"), "MoS2") == Path("r/elk/MoS2")
    assert calc.bands_directory(Path("r"), "MoS2") == Path("r/elk/MoS2/bands")


def test_elk_threads_must_be_positive():
    with pytest.raises(InputError, match="elk_threads must be a positive integer"):
        load_settings(env={"TMDFLOW_CONFIG": "/dev/null", "TMDFLOW_ELK_THREADS": "0"})


def test_elk_workflow_and_presets():
    spec = load_workflow(ROOT / "workflows" / "elk.yaml", "elk-paper", None, ["WSe2"])
    assert spec.calculator == "elk" and spec.calculator_steps() == ["scf_soc", "bands_soc", "analysis"]
    paper = load_preset("elk-paper")
    assert (paper.elk_rmt, paper.elk_rgkmax, paper.elk_lmaxapw, paper.kmesh, paper.vacuum) == (2.1, 7.0, 10, 16, 30.0)
    assert load_preset("elk-quick").path_points == 0


def test_zhu2011_with_elk_relaxes_and_leaves_out_the_figure_steps():
    spec = load_workflow(ROOT / "workflows" / "zhu2011.yaml", "elk-paper", "elk", ["WSe2"])
    assert spec.calculator_steps() == ["relax", "scf_sr", "scf_soc", "bands_soc", "analysis"]
    assert spec.skipped_steps() == ["bands_sr", "soc_map", "wannier_map", "figures"]
