"""`tmdflow priority PATTERN RANK`: matching workflows run first, each keeping its step order;
the rank survives extending the workflow.  Cheap steps come from the fake WIEN2k (a test double)."""

import re

from tmdflow.fireworks import RANK_STRIDE
from tmdflow.steps import STEPS
from tests.helpers import WORKFLOW_TEMPLATE, cli_env, run_tmdflow, stored_fireworks



def _unhashed(text: str) -> str:
    """Workflow keys end in '@<settings hash>' (tmdflow.identity); these tests read the names."""
    return re.sub(r"@[0-9a-f]{10}", "", text)


def test_ranked_workflow_runs_first_and_keeps_its_rank_when_extended(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / "a.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="wien2k", steps="scf_sr, scf_soc, bands_soc, analysis")
                                     .replace("[MoS2]", "[MoS2, WS2]"))
    run_tmdflow(env, "submit", str(tmp_path / "a.yaml"))
    out = _unhashed(run_tmdflow(env, "priority", "*:WS2-*", "1").stdout)
    assert "ext:WS2-bulk-test-wien2k: rank 1, 4 step(s) still to run" in out
    status = _unhashed(run_tmdflow(env, "status").stdout)
    assert "ext:WS2-bulk-test-wien2k  [READY]  rank 1" in status and "ext:MoS2-bulk-test-wien2k  [READY]\n" in status
    run_tmdflow(env, "launch", "--max-launches", "2")
    fws = stored_fireworks(tmp_path)
    done = sorted(n for n, d in fws.items() if d["state"] == "COMPLETED")
    assert done == ["WS2-bulk-scf_soc", "WS2-bulk-scf_sr"]  # WS2 first, in step order
    assert fws["WS2-bulk-bands_soc"]["spec"]["_priority"] > fws["MoS2-bulk-analysis"]["spec"]["_priority"]


def test_steps_appended_later_inherit_the_rank(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / "a.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="espresso", steps="scf_soc, bands_soc, analysis"))
    run_tmdflow(env, "submit", str(tmp_path / "a.yaml"))
    run_tmdflow(env, "priority", "ext:*", "2")
    (tmp_path / "b.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="espresso", steps="scf_soc, bands_soc, analysis, figures"))
    assert "extended with 1 step(s)" in run_tmdflow(env, "submit", str(tmp_path / "b.yaml")).stdout
    fws = stored_fireworks(tmp_path)
    assert fws["MoS2-bulk-figures"]["spec"]["_priority"] == 2 * RANK_STRIDE + STEPS.index("figures")
    assert fws["MoS2-bulk-scf_soc"]["spec"]["_priority"] == 2 * RANK_STRIDE + STEPS.index("scf_soc")


def test_unknown_pattern_and_bad_rank_are_refused(tmp_path):
    env = cli_env(tmp_path)
    (tmp_path / "a.yaml").write_text(WORKFLOW_TEMPLATE.format(calc="wien2k", steps="scf_sr, scf_soc, bands_soc, analysis"))
    run_tmdflow(env, "submit", str(tmp_path / "a.yaml"))
    err = _unhashed(run_tmdflow(env, "priority", "*monolayer*", "1", ok=False).stderr)
    assert "no workflow key matches '*monolayer*'" in err and "ext:MoS2-bulk-test-wien2k" in err
    err = run_tmdflow(env, "priority", "*", "500", ok=False).stderr
    assert "rank 500 is out of range" in err
