"""A Firework hands its step the store's checkpoints of its task (tmdflow.store.results
.TaskCheckpoints): what a step keeps there survives the step failing or being interrupted, and
is deleted once the step's task is stored.  The step that runs is the fake WIEN2k's scf_sr
(tests/fake_wien2k, a test double); the real use, Elk's E(a) scan, is tested in
tests/calculators/elk/test_elk_relax.py."""

from __future__ import annotations

import bson.json_util
import pytest
from fireworks.utilities.fw_serializers import load_object

from tests.helpers import WORKFLOW_TEMPLATE, cli_env, run_tmdflow, stored_fireworks
from tmdflow import fireworks
from tmdflow.errors import CalculationFailed
from tmdflow.settings import load_settings
from tmdflow.store import connection
from tmdflow.store.results import ResultsStore


def _scf_task(tmp_path, monkeypatch):
    env = cli_env(tmp_path)
    (tmp_path / "wf.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="wien2k", steps="scf_sr, scf_soc, bands_soc, analysis"))
    run_tmdflow(env, "submit", str(tmp_path / "wf.yaml"))
    for key in ("TMDFLOW_DB_URI", "TMDFLOW_WORK_DIR", "TMDFLOW_NPROCS", "WIENROOT"):
        monkeypatch.setenv(key, env[key])  # the Firetask's settings (fireworks.task_settings)
    connection.reset_cache()
    doc = stored_fireworks(tmp_path)["MoS2-bulk-scf_sr"]
    return load_object(doc["spec"]["_tasks"][0]), doc["spec"]


def _checkpoints(tmp_path):
    conn = connection.connect(load_settings(db_uri=f"embedded:{tmp_path / 'store.json'}", work_dir=tmp_path / "runs"))
    try:
        return [(c.task_id, c.label, c.settings_hash) for c in ResultsStore(conn.db).checkpoints()]
    finally:
        conn.embedded.close()
        connection.reset_cache()


@pytest.mark.parametrize("fails", [True, False])
def test_a_steps_checkpoints_outlive_its_failure_and_go_with_its_task(tmp_path, monkeypatch, fails):
    task, spec = _scf_task(tmp_path, monkeypatch)
    real_run_step = fireworks.run_step

    def step_keeping_a_part(request, settings, run_root, checkpoints=None):
        checkpoints.put("k0", "part 0", {"energy_ev": -1.0})
        assert checkpoints.get("k0") == {"energy_ev": -1.0}
        # on disk at once, not only when the Firework ends: a launcher killed now keeps the part
        on_disk = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
        assert [d["label"] for _, d in on_disk["checkpoints"]["documents"]] == ["part 0"]
        if fails:
            raise CalculationFailed("the second part failed", "(test)")
        return real_run_step(request, settings, run_root, checkpoints=checkpoints)

    monkeypatch.setattr(fireworks, "run_step", step_keeping_a_part)
    if fails:
        with pytest.raises(CalculationFailed):
            task.run_task(spec)
    else:
        task.run_task(spec)
    connection.reset_cache()
    kept = _checkpoints(tmp_path)
    if fails:  # kept under the step's task id (with the result's identity hash)
        assert [label for _, label, _ in kept] == ["part 0"]
        assert kept[0][0].startswith("MoS2-bulk-test-wien2k-") and kept[0][0].endswith("-scf_sr")
        assert kept[0][2] == task["settings_hash"]  # the Firework's, so status finds the step that reuses it
        # tmdflow status shows the part under the step that will reuse it, and only there
        lines = run_tmdflow(cli_env(tmp_path), "status").stdout.splitlines()
        at = next(i for i, line in enumerate(lines) if "MoS2-bulk-scf_sr" in line)
        assert lines[at + 1].split() == ["kept", "from", "earlier", "runs", "(1):", "part", "0"]
        assert sum("kept from earlier runs" in line for line in lines) == 1
    else:
        assert kept == []
        assert "kept from earlier runs" not in run_tmdflow(cli_env(tmp_path), "status").stdout
