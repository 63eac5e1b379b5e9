"""What the WIEN2k and Elk adapters share (tmdflow.calculators.all_electron): built from settings,
no pseudopotential digests, the exact-fraction k list, case directories, the SCF retry."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from tmdflow.calculators import get_calculator
from tmdflow.presets import load_preset
from tmdflow.settings import load_settings

SETTINGS = {"TMDFLOW_CONFIG": "/dev/null"}


@pytest.mark.parametrize("code, key", [("elk", "elk_maxscl"), ("wien2k", "wien2k_max_iterations")])
def test_a_retry_doubles_the_loop_bound_up_to_the_presets_limit(code, key):
    calc = get_calculator(code, load_settings(env=SETTINGS))
    assert calc.scf_retry_changes(load_preset("quick", {key: 40})) == {key: 80}
    assert calc.scf_retry_changes(load_preset("quick", {key: 700})) == {key: 1000}
    assert calc.scf_retry_changes(load_preset("quick", {key: 1000})) is None  # no room left


@pytest.mark.parametrize("code, folder, bands", [("elk", "elk", "r/elk/MoS2/bands"), ("wien2k", "lapw", "r/lapw/MoS2")])
def test_the_case_and_bands_directories(code, folder, bands):
    calc = get_calculator(code, load_settings(env=SETTINGS))
    assert calc.case_directory(Path("r"), "MoS2") == Path("r") / folder / "MoS2"
    assert calc.bands_directory(Path("r"), "MoS2") == Path(bands)


@pytest.mark.parametrize("code", ["elk", "wien2k"])
def test_no_pseudopotential_digests_and_exact_special_points(code):
    calc = get_calculator(code, load_settings(env=SETTINGS))
    assert not calc.uses_pseudopotentials
    assert calc.input_file_digests("MoS2", load_preset("quick")) == {}
    kpoints, labels = calc.splitting_kpoints(None, 0)
    assert labels == ["G", "K", "K'", "M", "Q"]
    assert kpoints[1] == (Fraction(1, 3), Fraction(1, 3), Fraction(0))
