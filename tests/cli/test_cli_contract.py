"""The CLI contract of query and table1 (issue 24): unknown fields and conflicting flags are
errors (exit 2), an unknown formula says so, table1 has a JSON format, its CSV names units and
rounds, its LaTeX compiles.  On a copy of the real store an earlier version wrote
(tests/fixtures/legacy_store) plus a monolayer result made from it."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from tmdflow.cli import main
from tests.helpers import FIXTURES

LEGACY = FIXTURES / "legacy_store" / "store.json"


@pytest.fixture
def store(tmp_path):
    """The legacy store (MoS2 bulk, WIEN2k test double) and a WSe2 monolayer result with the
    numbers of the paper study (Delta_CB < 0, rounding noise in a deviation)."""
    from tmdflow.settings import load_settings
    from tmdflow.store.connection import connect, reset_cache
    from tmdflow.store.documents import MaterialDocument, Table1Entry
    from tmdflow.store.results import MATERIALS, ResultsStore

    path = tmp_path / "store.json"
    shutil.copy(LEGACY, path)
    uri = f"embedded:{path}"
    conn = connect(load_settings(db_uri=uri))
    raw = conn.db[MATERIALS].find_one({})
    raw.pop("_id")
    bulk = MaterialDocument.model_validate(raw)
    wse2 = bulk.model_copy(update={
        "material_id": "WSe2-monolayer-test", "formula": "WSe2", "dimensionality": "monolayer", "calculator": "espresso",
        "table1": Table1Entry(a_angstrom=3.286, d_angstrom=1.68 + 2.220446049250313e-16, relaxed=True),
        "splitting": dataclasses.replace(bulk.splitting, delta_vb_k_mev=462.4, delta_cb_k_mev=-38.8,
                                         delta_cb_sign_known=True, spin_degenerate=False, direct_gap_at_k=False,
                                         vbm_location="K", cbm_location="0.50 Gamma-K")})
    ResultsStore(conn.db).upsert_material(wse2)
    conn.checkpoint()
    reset_cache()
    return {"TMDFLOW_DB_URI": uri, "TMDFLOW_CONFIG": os.devnull}


def _run(env, *args):
    return CliRunner().invoke(main, list(args), env=env)


def test_query_unknown_field_is_an_error_naming_it(store):
    out = _run(store, "query", "--fields", "formula,splitting.nope")
    assert out.exit_code == 2 and out.stdout == ""
    assert "unknown field(s) for --fields: splitting.nope" in out.stderr
    assert "splitting.delta_vb_k_mev" in out.stderr  # the fields it accepts
    assert "Traceback" not in out.output


def test_query_json_and_csv_together_is_an_error(store):
    out = _run(store, "query", "--json", "--csv")
    assert out.exit_code == 2 and "--json and --csv cannot be given together" in out.stderr and out.stdout == ""


def test_query_formula_without_results_says_so(store):
    out = _run(store, "query", "--formula", "WTe2", "--json")
    assert out.exit_code == 0 and json.loads(out.stdout) == []
    assert "no material results for formula WTe2" in out.stderr and "MoS2, WSe2" in out.stderr


def test_query_formula_that_is_not_mx2_is_an_error(store):
    out = _run(store, "query", "--formula", "Foo")
    assert out.exit_code == 2 and "'Foo' is not an MX2 formula" in out.stderr


def test_query_fields_derived_and_dotted(store):
    out = _run(store, "query", "--formula", "WSe2", "--csv",
               "--fields", "formula,settings,gap_type,splitting.cbm_location,table1.d_angstrom")
    assert out.exit_code == 0, out.output
    (row,) = csv.DictReader(io.StringIO(out.stdout))
    assert row["gap_type"] == "indirect: VBM at K, CBM at Q" and row["splitting.cbm_location"] == "Q"
    assert row["settings"] == "test (legacy)"


def test_table1_json_csv_names_with_units_and_rounded_values(store):
    js = _run(store, "table1", "--format", "json")
    assert js.exit_code == 0, js.output
    rows = {r["formula"]: r for r in json.loads(js.stdout)}
    wse2 = rows["WSe2"]
    assert wse2["delta_vb_k_mev"] == 462.4 and wse2["delta_cb_k_mev"] == -38.8  # Table I's sign: WX2 < 0
    assert wse2["monolayer_d_angstrom"] == 1.68 and wse2["monolayer_gap_type"] == "indirect: VBM at K, CBM at Q"
    assert rows["MoS2 (wien2k)"]["bulk_z_deviation_in_units_of_c"] == 0.0  # was -2.7e-17
    assert rows["MoS2 (wien2k)"]["delta_cb_k_mev"] is None  # spin-degenerate bulk: no sign
    text = _run(store, "table1", "--format", "csv").stdout
    header = text.splitlines()[0].split(",")
    assert header[:3] == ["formula", "settings", "monolayer_a_angstrom"] and "delta_cb_k_mev" in header
    assert all(re.fullmatch(r"[a-z0-9_]+", h) for h in header)
    assert not re.search(r"\d[eE][-+]\d", text) and "-0.0," not in text  # no float noise
    assert set(header) == set(wse2)  # CSV and JSON name the same values


def test_table1_unknown_format_is_a_usage_error(store):
    out = _run(store, "table1", "--format", "xml")
    assert out.exit_code == 2 and "xml" in out.output


def _balanced(tex: str) -> None:
    body = tex.replace(r"\$", "")
    for line in body.splitlines():
        assert line.count("$") % 2 == 0, line
        assert line.count("{") == line.count("}"), line
    assert "±" not in tex and "Δ" not in tex and "Å" not in tex and r"$\Delta$\_" not in tex
    cells = [line for line in tex.splitlines() if line.endswith(r"\\")]
    widths = {line.count("&") for line in cells}
    assert len(widths) == 1, widths  # every row has as many cells as the header


def test_table1_latex_is_balanced_and_compiles(store, tmp_path):
    tex = _run(store, "table1", "--format", "latex").stdout
    _balanced(tex)
    assert r"$\Delta_{\mathrm{CB}}(K)$" in tex and "$-38.8$" in tex and r"WSe$_{2}$" in tex
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip("pdflatex not installed (Debian texlive-latex-base): the balanced-math check above ran")
    (tmp_path / "t.tex").write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n"
                                    "\\usepackage[landscape,margin=5mm]{geometry}\n\\begin{document}\n\\tiny\n"
                                    f"{tex}\\end{{document}}\n")
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000
    assert "Missing $ inserted" not in proc.stdout and "Undefined control sequence" not in proc.stdout
