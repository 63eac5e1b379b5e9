"""The pw.x parsers on the cases of issue 26, each on real pw.x 6.7 output of the project's own runs
(tests/fixtures/README.md): the last SCF of a relaxation, the final cell of a vc-relax, a
spin-polarised run, the XML of other QE versions, and `tmdflow analyze` on an unconverged SCF."""

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tmdflow.calculators.espresso.parsers import parse_pw_stdout, parse_pw_xml
from tmdflow.cli import main
from tmdflow.errors import OutputParseError, UnsupportedOutput
from tests.helpers import QE67


STRAINED = QE67 / "mos2_test_vcrelax_strained"  # vc-relax from a = 3.10 A, every SCF converged
LAST_UNCONVERGED = QE67 / "mos2_test_vcrelax_last_scf_unconverged"  # its last SCF did not converge
LSDA = QE67 / "mos2_test_scf_lsda"  # nspin = 2
NOT_REQUIRED = QE67 / "mos2_test_scf_not_required_to_converge"  # scf_must_converge=.false., 3 iterations
UNCONVERGED = QE67 / "mos2_test_scf_unconverged"
QUICK = QE67 / "mos2_quick_soc"


def _scf_ends(text: str) -> list[str]:
    return re.findall(r"convergence has been achieved in\s+\d+|convergence NOT achieved", text)


# -- 1. the last SCF of a relaxation ------------------------------------------------------------

def test_text_parser_counts_the_iterations_of_the_last_scf_of_a_relaxation():
    out = QE67 / "mos2_test_relax_resumed" / "relax.out"
    first_count = int(re.search(r"convergence has been achieved in\s+(\d+)", out.read_text()).group(1))
    txt, xml = parse_pw_stdout(out), parse_pw_xml(out.with_suffix(".xml"))
    assert txt.converged is True and txt.n_iterations == xml.n_scf_steps
    assert first_count != xml.n_scf_steps  # the first SCF (3 iterations, a restart) is not the last (9)


def test_a_relaxation_whose_last_scf_did_not_converge_is_not_converged():
    out = LAST_UNCONVERGED / "relax.out"
    ends = _scf_ends(out.read_text())
    assert any(e.startswith("convergence has been achieved") for e in ends)  # earlier SCFs converged
    assert ends[-1] == "convergence NOT achieved"  # the last did not
    txt, xml = parse_pw_stdout(out), parse_pw_xml(out.with_suffix(".xml"))
    assert txt.converged is False and txt.n_iterations is None
    assert xml.converged is False  # the XML says the same of the same SCF


def test_an_scf_pw_x_calls_converged_at_electron_maxstep_is_not_converged():
    """With scf_must_converge = .false., pw.x 6.7 prints "convergence has been achieved" (and
    writes convergence_achieved = true) when it reaches electron_maxstep, whatever the accuracy."""
    text = (NOT_REQUIRED / "scf_soc.out").read_text()
    assert "convergence has been achieved in   3 iterations" in text  # what pw.x says
    accuracy = float(re.findall(r"estimated scf accuracy\s*<\s*(\S+)", text)[-1])
    threshold = float(re.search(r"scf convergence threshold\s*=\s*(\S+)", text).group(1))
    assert accuracy > 1000 * threshold  # what it is
    assert "<convergence_achieved>true</convergence_achieved>" in (NOT_REQUIRED / "scf_soc.xml").read_text()
    txt, xml = parse_pw_stdout(NOT_REQUIRED / "scf_soc.out"), parse_pw_xml(NOT_REQUIRED / "scf_soc.xml")
    assert txt.converged is False and txt.n_iterations is None
    assert xml.converged is False and xml.n_scf_steps == 3
    result = CliRunner().invoke(main, ["analyze", str(NOT_REQUIRED)])
    assert result.exit_code == 31, result.output


# -- 2. the final cell of a vc-relax ------------------------------------------------------------

def test_text_parser_uses_the_cell_of_the_final_scf_of_a_vc_relax():
    txt, xml = parse_pw_stdout(STRAINED / "relax.out"), parse_pw_xml(STRAINED / "relax.xml")
    a_start = float(re.search(r"^\s*(\S+)", (STRAINED / "relax.in").read_text().split("CELL_PARAMETERS angstrom\n")[1])
                    .group(1))
    a_final = np.linalg.norm(xml.cell_angstrom[0])
    assert a_final / a_start - 1 > 0.02  # the cell really changed (3.10 -> 3.1887 A, measured)
    # reciprocal cell of the final cell, not of the starting one
    assert np.allclose(txt.bands.reciprocal_cell, xml.bands.reciprocal_cell, atol=1e-5)
    assert np.linalg.norm(txt.bands.reciprocal_cell[0]) == pytest.approx(
        4 * np.pi / np.sqrt(3) / a_final, rel=1e-5)
    # the 3x3x1 mesh points are multiples of 1/3 in the final cell's crystal coordinates
    k = txt.bands.kpoints_crystal
    assert np.allclose(k * 3, np.round(k * 3), atol=3e-4)
    assert np.allclose(k, xml.bands.kpoints_crystal, atol=2e-4)


# -- 3. spin-polarised runs ---------------------------------------------------------------------

def test_a_spin_polarised_run_is_refused_by_both_parsers_by_name():
    assert "SPIN DOWN" in (LSDA / "scf_lsda.out").read_text()
    with pytest.raises(UnsupportedOutput, match="spin-polarised") as text_err:
        parse_pw_stdout(LSDA / "scf_lsda.out")
    with pytest.raises(UnsupportedOutput, match="spin-polarised") as xml_err:
        parse_pw_xml(LSDA / "scf_lsda.xml")
    assert text_err.value.exit_code == xml_err.value.exit_code == 41
    assert isinstance(text_err.value, OutputParseError)  # callers catching parse errors still do
    result = CliRunner().invoke(main, ["analyze", str(LSDA), "--json"])
    assert result.exit_code == 41
    assert json.loads(result.stdout)["error"]["type"] == "UnsupportedOutput"


# -- 4, 5. XML of other QE versions ---------------------------------------------------------------

def test_qe7_exit_status_element(tmp_path):
    """QE >= 7.0 writes <exit_status> where 6.x wrote <status> (published qes schema qes_211101:
    `<element type="qes:statusType" name="exit_status" .../>`).  QE 7 cannot be run here, so the
    real 6.7 file is given the 7.x element name, and nothing else changed."""
    text = (QUICK / "scf_soc.xml").read_text()
    assert text.count("<status>0</status>") == 1
    qe7 = tmp_path / "qe7.xml"
    qe7.write_text(text.replace("<status>0</status>", "<exit_status>0</exit_status>"))
    assert parse_pw_xml(qe7).exit_status == 0
    neither = tmp_path / "neither.xml"
    neither.write_text(text.replace("<status>0</status>", ""))
    assert parse_pw_xml(neither).exit_status is None


@pytest.mark.parametrize("fixture,converged", [(QUICK / "scf_soc.xml", True), (UNCONVERGED / "scf_soc.xml", False)])
def test_qe63_xml_without_convergence_achieved(tmp_path, fixture, converged):
    """QE 6.2-6.3 (qes-20180510) write scf_conv with n_scf_steps and scf_error only; the real 6.7
    file without its convergence_achieved element stands for one."""
    text = fixture.read_text()
    old = tmp_path / "qe63.xml"
    old.write_text(re.sub(r"\s*<convergence_achieved>\w+</convergence_achieved>", "", text))
    assert "convergence_achieved" not in old.read_text()
    assert parse_pw_xml(fixture).converged is converged
    assert parse_pw_xml(old).converged is converged


def test_pre_62_xml_is_unsupported_not_unfinished(tmp_path):
    """QE <= 6.1 wrote <prefix>.save/data-file.xml in the iotk format (root <Root>); a file of that
    layout is refused as an unsupported format, not as a run that did not finish."""
    old = tmp_path / "data-file.xml"
    old.write_text('<?xml version="1.0"?>\n<?iotk version="1.2.0"?>\n<?iotk file_version="1.0"?>\n'
                   '<?iotk binary="F"?>\n<?iotk qe_version="6.1"?>\n<Root>\n  <HEADER>\n'
                   '    <FORMAT name="QEXML" version="1.4.0"/>\n    <CREATOR name="PWSCF" version="6.1"/>\n'
                   '  </HEADER>\n</Root>\n')
    with pytest.raises(UnsupportedOutput, match="not a 'qes' schema file"):
        parse_pw_xml(old)
    # a qes-layout file whose creator is older than 6.2
    early = tmp_path / "early.xml"
    early.write_text((QUICK / "scf_soc.xml").read_text().replace('NAME="PWSCF" VERSION="6.7MaX"',
                                                                 'NAME="PWSCF" VERSION="6.1"'))
    with pytest.raises(UnsupportedOutput, match="QE 6.1"):
        parse_pw_xml(early)


# -- 6. tmdflow analyze ---------------------------------------------------------------------------

def test_analyze_refuses_an_unconverged_scf_and_names_the_override():
    result = CliRunner().invoke(main, ["analyze", str(UNCONVERGED)])
    assert result.exit_code == 31
    assert "did not converge" in result.output and "--allow-unconverged" in result.output
    assert "Δ_VB" not in result.output


def test_analyze_of_a_text_output_that_stopped_unconverged_says_so():
    # pw.x prints no eigenvalues after an SCF that stopped unconverged: the reason is the SCF,
    # not a missing verbosity='high'
    for out in (UNCONVERGED / "scf_soc.out", LAST_UNCONVERGED / "relax.out"):
        result = CliRunner().invoke(main, ["analyze", str(out), "--allow-unconverged"])
        assert result.exit_code == 31 and "did not converge" in result.output, result.output
        assert "verbosity" not in result.output


def test_analyze_with_the_override_prints_the_warning_beside_the_result():
    result = CliRunner().invoke(main, ["analyze", str(UNCONVERGED), "--allow-unconverged"])
    assert result.exit_code == 0, result.output
    table = result.output.split("Δ_VB(K)")[1]
    assert "WARNING" in result.output.split("Δ_VB(K)")[0] and "NOT CONVERGED" in table
    data = json.loads(CliRunner().invoke(main, ["analyze", str(UNCONVERGED), "--allow-unconverged",
                                                "--json"]).stdout)
    assert data["scf_converged"] is False and "did not converge" in data["warning"]
    assert data["delta_vb_k_mev"] > 0


def test_analyze_json_error_is_json_with_the_exit_code():
    result = CliRunner().invoke(main, ["analyze", str(UNCONVERGED), "--json"])
    assert result.exit_code == 31
    err = json.loads(result.stdout)["error"]
    assert err["type"] == "ScfNotConverged" and err["exit_code"] == 31 and "--allow-unconverged" in err["remedy"]
    missing = CliRunner().invoke(main, ["analyze", "/nonexistent/run", "--json"])
    assert missing.exit_code == 40 and json.loads(missing.stdout)["error"]["type"] == "OutputParseError"


def test_analyze_converged_run_reports_its_scf(tmp_path):
    data = json.loads(CliRunner().invoke(main, ["analyze", str(QUICK), "--json"]).stdout)
    assert data["source"].endswith("bands_soc.xml")  # a bands run: its SCF is the one beside it
    assert data["scf_converged"] is True and data["scf_source"].endswith("scf_soc.xml") and data["warning"] is None


def test_analyze_bands_made_on_an_unconverged_density_are_refused(tmp_path):
    """Both files are real; together they stand for a bands run on the density of an SCF that did
    not converge (a non-SCF run has no convergence of its own: the SCF beside it decides)."""
    shutil.copyfile(QUICK / "bands_soc.xml", tmp_path / "bands_soc.xml")
    shutil.copyfile(UNCONVERGED / "scf_soc.xml", tmp_path / "scf_soc.xml")
    result = CliRunner().invoke(main, ["analyze", str(tmp_path)])
    assert result.exit_code == 31 and "scf_soc.xml did not converge" in result.output


def test_analyze_reports_the_real_parse_error(tmp_path):
    text = (QUICK / "bands_soc.xml").read_text()
    (tmp_path / "out" / "tmd.save").mkdir(parents=True)
    (tmp_path / "out" / "tmd.save" / "data-file-schema.xml").write_text(text[: len(text) // 2])
    result = CliRunner().invoke(main, ["analyze", str(tmp_path)])
    assert result.exit_code == 40 and "cannot read pw.x XML" in result.output
    assert "verbosity" not in result.output  # not the generic "no readable output" guess
    as_json = CliRunner().invoke(main, ["analyze", str(tmp_path), "--json"])
    assert as_json.exit_code == 40 and "cannot read" in json.loads(as_json.stdout)["error"]["problem"]


# -- the two parsers on every real fixture --------------------------------------------------------

PAIRS = sorted(o for o in QE67.glob("*/*.out") if o.with_suffix(".xml").is_file())


def test_every_real_fixture_with_both_outputs_is_cross_checked():
    assert {p.parent.name for p in PAIRS} >= {"mos2_quick_soc", "mos2_test_scf_sr", "mos2_test_scf_unconverged",
                                             "wse2_quick_soc", "wse2_se3d_paper_relax", "mos2_test_relax_resumed",
                                             "mos2_test_vcrelax_strained", "mos2_test_vcrelax_last_scf_unconverged",
                                             "mos2_test_scf_lsda", "mos2_test_scf_not_required_to_converge"}


@pytest.mark.parametrize("out", PAIRS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_text_and_xml_parsers_agree(out):
    """Eigenvalues, k-points, cell and convergence of the same run, read from its text output
    and from its XML, agree to the text's printed precision (or both refuse it by the same name)."""
    try:
        xml = parse_pw_xml(out.with_suffix(".xml"))
    except OutputParseError as exc:
        with pytest.raises(type(exc)):
            parse_pw_stdout(out)
        return
    txt = parse_pw_stdout(out)
    assert txt.qe_version == xml.qe_version
    assert txt.converged == xml.converged
    if xml.converged:
        assert txt.n_iterations == xml.n_scf_steps
    assert txt.spinor == xml.noncollinear == xml.bands.spinor
    if txt.bands is None:  # pw.x printed no eigenvalues (an SCF stopped unconverged)
        assert "bands (ev)" not in out.read_text().rsplit("End of self-consistent calculation", 1)[-1]
        return
    assert txt.bands.eigenvalues.shape == xml.bands.eigenvalues.shape
    assert np.allclose(txt.bands.eigenvalues, xml.bands.eigenvalues, atol=1e-4)  # 4 decimals (eV)
    assert np.allclose(txt.bands.kpoints_crystal, xml.bands.kpoints_crystal, atol=2e-4)  # 4 decimals
    assert np.allclose(txt.bands.reciprocal_cell, xml.bands.reciprocal_cell, atol=1e-5)
    assert txt.bands.n_electrons == pytest.approx(xml.bands.n_electrons)
