"""The paper's workflow (workflows/zhu2011.yaml: relax, SR SCF, SO SCF, bands, analysis for four
MX2, monolayer and bulk) with ``--calculator wien2k``, end to end through the CLI in separate
processes (submit -> launch -> query -> table1), against the fake WIEN2k installation in
tests/fake_wien2k (a test double; tmdflow is only told WIENROOT)."""

import json
import re
import os
import subprocess
import sys

import bson.json_util
import pytest

from tmdflow.units import BOHR_ANGSTROM, RYDBERG_EV
from tests.helpers import FAKE_WIEN2K, ROOT

FAKE = FAKE_WIEN2K
ZHU2011 = ROOT / "workflows" / "zhu2011.yaml"


def _tmdflow(args, env):
    proc = subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"tmdflow {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def lapw_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lapw")
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{d / 'store.json'}", "TMDFLOW_WORK_DIR": str(d / "runs"),
           "TMDFLOW_NPROCS": "2", "WIENROOT": str(FAKE), "PATH": f"{FAKE}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    for var in ("FAKE_WIEN2K_SYMMETRY", "FAKE_WIEN2K_RMT", "FAKE_WIEN2K_WARN", "FAKE_WIEN2K_NOT_CONVERGED",
                "FAKE_WIEN2K_A_TRUE"):
        env.pop(var, None)
    submitted = _tmdflow(["submit", str(ZHU2011), "--preset", "test", "--calculator", "wien2k"], env)
    _tmdflow(["launch"], env)
    return {"dir": d, "env": env, "submitted": submitted,
            "store": bson.json_util.loads((d / "store.json").read_text())["tmdflow"]}


def test_every_step_completed_with_the_wien2k_calculator(lapw_run):
    assert "zhu2011:MoS2-monolayer-test-wien2k@" in lapw_run["submitted"]  # @<settings hash>
    fws = [doc for _, doc in lapw_run["store"]["fireworks"]["documents"]]
    assert len(fws) == 40 and {f["state"] for f in fws} == {"COMPLETED"}
    tasks = [doc for _, doc in lapw_run["store"]["tasks"]["documents"]]
    assert {t["calculator"] for t in tasks} == {"wien2k"}
    assert {t["code_version"] for t in tasks} == {"WIEN2k_FAKE_TEST_DOUBLE (not WIEN2k)"}
    scf = next(t for t in tasks if re.fullmatch(r"MoS2-monolayer-test-wien2k-[0-9a-f]{10}-scf_soc", t["task_id"]))
    assert "run_lapw -so -ec 0.0001 -cc 0.0001 -i 40 -p" in scf["inputs"]["commands_and_files"]


def test_the_run_followed_the_case_conventions(lapw_run):
    (root,) = (lapw_run["dir"] / "runs").glob("MoS2-monolayer-test-wien2k-*")  # <material key>: ...-<hash>
    case = root / "lapw" / "MoS2"
    assert (case / "scf_sr").is_dir() and (case / "scf_soc").is_dir()  # save_lapw after each SCF
    assert "FAKE WIEN2k test double" in (case / "MoS2.dayfile").read_text()  # really the double ran
    assert not list(case.glob("*.vector*"))  # eigenvectors removed after the bands


def test_query_and_table1_hold_the_wien2k_results(lapw_run):
    fields = "material_id,dimensionality,calculator,splitting,table1"
    docs = json.loads(_tmdflow(["query", "--formula", "MoS2", "--calculator", "wien2k", "--fields", fields, "--json"],
                               lapw_run["env"]))
    assert len(docs) == 2
    ml = next(m for m in docs if m["dimensionality"] == "monolayer")
    assert ml["calculator"] == "wien2k" and re.fullmatch(r"MoS2-monolayer-test-wien2k-[0-9a-f]{10}", ml["material_id"])
    # the fake's model: Delta = lambda (Ry) at K; a = its E(a) minimum; d = its relaxed height
    assert ml["splitting"]["delta_vb_k_mev"] == pytest.approx(0.0110 * RYDBERG_EV * 1000, abs=1e-6)
    assert ml["table1"]["a_angstrom"] == pytest.approx(6.05 * BOHR_ANGSTROM, rel=2e-4)
    assert ml["table1"]["d_angstrom"] == pytest.approx(2.95 * BOHR_ANGSTROM, abs=1e-6)
    bulk = next(m for m in docs if m["dimensionality"] == "bulk")
    assert bulk["splitting"]["spin_degenerate"]  # inversion + time reversal
    table = _tmdflow(["table1", "--calculator", "wien2k", "--format", "csv"], lapw_run["env"]).splitlines()
    rows = {r.split(",")[0]: r.split(",") for r in table[1:]}
    assert set(rows) == {"MoS2 (wien2k)", "MoSe2 (wien2k)", "WS2 (wien2k)", "WSe2 (wien2k)"}
    header = table[0].split(",")
    # CSV: readable column names, values rounded as the table shows them (0.1 meV)
    assert float(rows["WSe2 (wien2k)"][header.index("delta_vb_k_mev")]) == pytest.approx(0.0310 * RYDBERG_EV * 1000,
                                                                                        abs=0.05)
