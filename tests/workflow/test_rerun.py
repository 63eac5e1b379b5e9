"""`tmdflow rerun FW_ID`: a completed step and the steps after it run again on the next launch,
nothing before it is touched, and the result is written anew.  Cheap steps come from the fake
WIEN2k (tests/fake_wien2k, a test double)."""

import bson.json_util
from tests.helpers import WORKFLOW_TEMPLATE, cli_env, run_tmdflow, stored_fireworks



def _material_updated_at(tmp_path):
    data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
    (doc,) = [d for _, d in data["materials"]["documents"]]
    return doc["updated_at"]


def test_rerun_resets_the_step_and_its_descendants_only(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / "a.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="wien2k", steps="scf_sr, scf_soc, bands_soc, analysis"))
    run_tmdflow(env, "submit", str(tmp_path / "a.yaml"))
    run_tmdflow(env, "launch")
    fws = stored_fireworks(tmp_path)
    assert {d["state"] for d in fws.values()} == {"COMPLETED"}
    first = _material_updated_at(tmp_path)
    bands = fws["MoS2-bulk-bands_soc"]["fw_id"]
    out = run_tmdflow(env, "rerun", str(bands)).stdout
    assert f"fw_ids [{bands}, {fws['MoS2-bulk-analysis']['fw_id']}]" in out  # the step and the one after it
    states = {n: d["state"] for n, d in stored_fireworks(tmp_path).items()}
    assert states == {"MoS2-bulk-scf_sr": "COMPLETED", "MoS2-bulk-scf_soc": "COMPLETED",
                      "MoS2-bulk-bands_soc": "READY", "MoS2-bulk-analysis": "WAITING"}
    run_tmdflow(env, "launch")
    assert {d["state"] for d in stored_fireworks(tmp_path).values()} == {"COMPLETED"}
    assert _material_updated_at(tmp_path) > first  # the analysis wrote its result again


def test_unknown_ids_are_refused_before_anything_is_reset(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / "a.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="wien2k", steps="scf_sr, scf_soc, bands_soc, analysis"))
    run_tmdflow(env, "submit", str(tmp_path / "a.yaml"))
    run_tmdflow(env, "launch")
    err = run_tmdflow(env, "rerun", "2", "99", ok=False).stderr
    assert "no step with fw_id [99]" in err and "tmdflow status" in err
    assert {d["state"] for d in stored_fireworks(tmp_path).values()} == {"COMPLETED"}
