"""The command line on real fixtures and bad input (no pw.x runs here)."""

import json

from click.testing import CliRunner

from tmdflow.cli import main
from tests.helpers import QE67



def test_help_reads_well():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for cmd in ("compute", "paper", "analyze", "pseudo", "presets"):
        assert cmd in result.output


def test_analyze_a_run_directory_json():
    result = CliRunner().invoke(main, ["analyze", str(QE67 / "mos2_quick_soc"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"].endswith("bands_soc.xml")
    assert abs(data["delta_vb_k_mev"] - 149.1) < 0.1 and data["delta_cb_sign_known"]


def test_analyze_text_output_and_xml_file_give_the_same_delta():
    out = CliRunner().invoke(main, ["analyze", str(QE67 / "mos2_quick_soc" / "bands_soc.out"), "--json"])
    xml = CliRunner().invoke(main, ["analyze", str(QE67 / "mos2_quick_soc" / "bands_soc.xml"), "--json"])
    a, b = json.loads(out.stdout), json.loads(xml.stdout)
    assert abs(a["delta_vb_k_mev"] - b["delta_vb_k_mev"]) < 0.2  # text output has 0.1 meV precision


def test_analyze_table_shows_paper_value():
    result = CliRunner().invoke(main, ["analyze", str(QE67 / "mos2_quick_soc"), "--formula", "MoS2"])
    assert "149.1" in result.output and "148" in result.output


def test_analyze_refuses_a_run_without_spin_orbit():
    result = CliRunner().invoke(main, ["analyze", str(QE67 / "mos2_test_scf_sr")])
    assert result.exit_code == 50 and "no spin-orbit" in result.output


def test_analyze_accepts_an_scf_mesh_that_contains_k():
    # a Gamma-centred 6x6x1 mesh contains K (3 divides 6), so the SCF XML alone is analysable
    result = CliRunner().invoke(main, ["analyze", str(QE67 / "mos2_quick_soc" / "scf_soc.xml"), "--json"])
    assert result.exit_code == 0, result.output
    assert abs(json.loads(result.stdout)["delta_vb_k_mev"] - 149.1) < 1.0


def test_bad_formula_exit_code_and_message():
    result = CliRunner().invoke(main, ["compute", "MoO2"])
    assert result.exit_code == 2
    assert "chalcogen" in result.output and "->" in result.output


def test_bad_preset_is_refused_before_work():
    result = CliRunner().invoke(main, ["compute", "MoS2", "--preset", "nope"])
    assert result.exit_code == 2 and "unknown preset" in result.output


def test_vacuum_below_10_is_refused():
    result = CliRunner().invoke(main, ["compute", "MoS2", "--vacuum", "5"])
    assert result.exit_code == 2 and "vacuum" in result.output
