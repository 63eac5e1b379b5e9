"""`touch <work_dir>/STOP` stops a local launcher between steps; the next launch resumes.
Cheap steps come from the fake WIEN2k installation (tests/fake_wien2k, a test double)."""

import os
import subprocess
import sys

import bson.json_util
from tests.helpers import FAKE_WIEN2K, ROOT

FAKE = FAKE_WIEN2K


def test_stop_file_stops_between_steps_and_launch_resumes(tmp_path):
    (tmp_path / "wf.yaml").write_text(
        "name: stoptest\ncalculator: wien2k\npreset: test\nmaterials: [MoS2]\nstructures: [bulk]\n"
        "steps: [scf_sr, scf_soc, bands_soc, analysis]\n")
    env = {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}", "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
           "TMDFLOW_NPROCS": "1", "WIENROOT": str(FAKE), "PYTHONPATH": str(ROOT)}

    def tmdflow(*args):
        proc = subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc

    def states():
        data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
        return sorted(doc["state"] for _, doc in data["fireworks"]["documents"])

    tmdflow("submit", str(tmp_path / "wf.yaml"))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "STOP").touch()
    out = tmdflow("launch")
    assert "stop file" in out.stderr and "launched 0" in out.stderr
    assert not (tmp_path / "runs" / "STOP").exists()  # consumed: the next launch runs normally
    assert states() == ["READY", "WAITING", "WAITING", "WAITING"]
    tmdflow("launch", "--max-launches", "1")
    assert states().count("COMPLETED") == 1
    tmdflow("launch")
    assert states() == ["COMPLETED"] * 4
