"""Submitting a workflow again with more steps extends it: the new steps are chained after the
last one and receive its hand-off; completed steps are not rerun.  Cheap steps come from the fake
WIEN2k (tests/fake_wien2k, a test double)."""

import bson.json_util

from tests.helpers import WORKFLOW_TEMPLATE, cli_env, run_tmdflow, stored_fireworks


def test_more_steps_extend_a_submitted_workflow(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / "a.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="espresso", steps="scf_soc, bands_soc, analysis"))
    run_tmdflow(env, "submit", str(tmp_path / "a.yaml"))
    before = stored_fireworks(tmp_path)
    (tmp_path / "b.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="espresso", steps="scf_soc, bands_soc, analysis, figures"))
    out = run_tmdflow(env, "submit", str(tmp_path / "b.yaml")).stdout
    assert "extended with 1 step(s)" in out
    data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
    fws = stored_fireworks(tmp_path)
    new, analysis = fws["MoS2-bulk-figures"], fws["MoS2-bulk-analysis"]
    wf = data["workflows"]["documents"][0][1]
    assert wf["links"][str(analysis["fw_id"])] == [new["fw_id"]]  # chained after the last step
    assert new["state"] == "WAITING" and new["spec"]["_tasks"][0]["step"] == "figures"
    assert all(fws[n]["state"] == before[n]["state"] for n in before)  # nothing reset
    again = run_tmdflow(env, "submit", str(tmp_path / "b.yaml")).stdout
    assert "already submitted" in again and "extended" not in again  # idempotent


def test_figure_steps_are_left_out_for_wien2k(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / "w.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="wien2k", steps="scf_sr, scf_soc, bands_soc, analysis, figures"))
    proc = run_tmdflow(env, "submit", str(tmp_path / "w.yaml"))
    assert "fw_ids 1-4" in proc.stdout and "figures are not implemented for this calculator" in proc.stderr


def test_steps_before_existing_ones_cannot_be_added(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / "a.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="espresso", steps="scf_soc, bands_soc, analysis"))
    run_tmdflow(env, "submit", str(tmp_path / "a.yaml"))
    (tmp_path / "b.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="espresso", steps="scf_sr, scf_soc, bands_soc, analysis"))
    err = run_tmdflow(env, "submit", str(tmp_path / "b.yaml"), ok=False).stderr
    assert "without step 'scf_sr'" in err and "--force" in err
