"""One name per band-edge location and one phrase per gap type, in every output (issue 24).

The WSe2 conduction minimum at (1/6, 1/6, 0) was named four ways: 'CBM at Q' (run),
'indirect (K->Q)' (table1), 'CBM at 0.50 Gamma-K' (analyze on a directory without labels) and
'CBM at k=(0.167, 0.167, 0.000)' (analyze on the pw.x text output, k printed with 4 decimals).
"""

import dataclasses
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tmdflow.analysis.splitting import _location, analyze_bands
from tmdflow.analysis.table1 import render, table1_rows
from tmdflow.analysis.vocabulary import canonical_location, gap_type, gap_type_of, kpoint_location
from tmdflow.bands import BandData
from tmdflow.calculators.espresso.parsers import parse_pw_stdout, parse_pw_xml
from tmdflow.report import splitting_rows
from tests.helpers import FIXTURES

QE67 = FIXTURES / "qe-6.7"
LEGACY = FIXTURES / "legacy_store" / "store.json"


@pytest.mark.parametrize("stored, name", [
    ("Q", "Q"), ("0.50 Gamma-K", "Q"), ("k=(0.167, 0.167, 0.000)", "Q"), ("G", "Gamma"), ("Gamma", "Gamma"),
    ("k=(0.3333, 0.3333, 0.0000)", "K"), ("k=(-0.333, -0.333, 0.000)", "K'"), ("0.55 Gamma-K", "0.55 Gamma-K"),
    ("0.40 Gamma-M", "0.40 Gamma-M"), ("k=(0.100, 0.300, 0.000)", "k=(0.100, 0.300, 0.000)"), ("M", "M"),
])
def test_every_spelling_of_a_point_has_one_name(stored, name):
    assert canonical_location(stored) == name


def test_points_are_named_from_their_coordinates():
    assert kpoint_location([1 / 6, 1 / 6, 0]) == "Q"
    assert kpoint_location([0.1667, 0.16667, 0]) == "Q"  # 4 printed decimals
    assert kpoint_location([2 / 3, 2 / 3, 0]) == "K'"  # = -K modulo b1 + b2
    assert kpoint_location([4 / 3, 1 / 3, 0]) == "K"
    assert kpoint_location([0.1, 0.1, 0]) == "0.30 Gamma-K"
    assert kpoint_location([0.2, 0.0, 0]) == "0.40 Gamma-M"
    assert kpoint_location([0.1, 0.3, 0.0]) == "k=(0.100, 0.300, 0.000)"
    assert kpoint_location([0.1, 0.3, 0.0], "X1") == "X1"  # the run's own label for an unnamed point
    assert kpoint_location([0, 0, 0.5]) == "k=(0.000, 0.000, 0.500)"  # off the plane (bulk A)


def test_gap_types():
    assert gap_type("K", "K") == "direct at K"
    assert gap_type("K", "0.50 Gamma-K") == "indirect: VBM at K, CBM at Q"
    assert gap_type("G", "k=(0.167, 0.167, 0.000)") == "indirect: VBM at Gamma, CBM at Q"


def test_the_text_and_xml_outputs_of_one_real_run_name_its_points_alike():
    """wse2_quick_soc: pw.x 6.7 text output (Cartesian k, 4 decimals) and XML of the same run."""
    text = parse_pw_stdout(QE67 / "wse2_quick_soc" / "bands_soc.out").bands
    xml = parse_pw_xml(QE67 / "wse2_quick_soc" / "bands_soc.xml").bands
    for bands in (text, xml):
        assert not bands.labels  # no labels file: names from the coordinates alone
        assert [_location(bands, i) for i in range(5)] == ["Gamma", "K", "K'", "M", "Q"]


def _toy_wse2_like() -> BandData:
    """VBM at K, CBM at (1/6, 1/6, 0): the indirect case of the issue."""
    k = np.array([[0, 0, 0], [1 / 3, 1 / 3, 0], [0.1667, 0.16667, 0]])
    e = np.array([[-2, -1.0, 2, 3], [-1, -0.5, 1.5, 2], [-3, -1.0, 1.0, 2]], float)
    return BandData(k, e, 2.0, True, np.eye(3))


def test_one_name_in_the_analysis_table1_and_the_report():
    s = analyze_bands(_toy_wse2_like())
    assert (s.vbm_location, s.cbm_location) == ("K", "Q")
    assert gap_type_of(s) == "indirect: VBM at K, CBM at Q"
    assert splitting_rows([("WSe2", s)])[0][-1] == "indirect: VBM at K, CBM at Q"  # analyze, compute, run


def test_a_stored_result_named_the_old_way_is_shown_with_todays_name(tmp_path):
    """A material document written with 'k=(0.167, 0.167, 0.000)' (an earlier analyze) reads as Q
    in Table I (all formats) and in tmdflow query."""
    from tmdflow.cli import main
    from tmdflow.store.connection import connect
    from tmdflow.store.documents import MaterialDocument
    from tmdflow.store.results import MATERIALS

    uri = f"embedded:{tmp_path / 'store.json'}"
    (tmp_path / "store.json").write_bytes(LEGACY.read_bytes())  # a real store of an earlier version
    from tmdflow.settings import load_settings

    conn = connect(load_settings(db_uri=uri))
    raw = conn.db[MATERIALS].find_one({})
    raw.pop("_id")
    doc = MaterialDocument.model_validate(raw)
    old = doc.model_copy(update={"dimensionality": "monolayer", "material_id": "WSe2-monolayer-test", "formula": "WSe2",
                                 "splitting": dataclasses.replace(doc.splitting, direct_gap_at_k=False,
                                                                  vbm_location="K",
                                                                  cbm_location="k=(0.167, 0.167, 0.000)")})
    row = table1_rows([old])[0]
    assert row["gap_type"] == "indirect: VBM at K, CBM at Q"
    assert "indirect: VBM at K, CBM at Q" in render([row], "markdown")
    assert json.loads(render([row], "json"))[0]["monolayer_gap_type"] == "indirect: VBM at K, CBM at Q"
    assert "indirect: VBM at K, CBM at Q" in render([row], "csv")
    assert r"indirect: VBM at K, CBM at Q" in render([row], "latex")
    data = old.model_dump(mode="json")
    conn.db[MATERIALS].insert_one(data)
    conn.checkpoint()
    out = CliRunner().invoke(main, ["query", "--formula", "WSe2", "--fields", "splitting.cbm_location,gap_type", "--json"],
                             env={"TMDFLOW_DB_URI": uri, "TMDFLOW_CONFIG": os.devnull})
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == [{"splitting.cbm_location": "Q", "gap_type": "indirect: VBM at K, CBM at Q"}]


def test_latex_names_gamma_in_math():
    from tmdflow.analysis.vocabulary import latex_location

    assert latex_location("indirect: VBM at Gamma, CBM at Q") == r"indirect: VBM at $\Gamma$, CBM at Q"
