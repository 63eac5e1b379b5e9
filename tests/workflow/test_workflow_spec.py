"""Workflow YAML: schema validation with line numbers, Workflow building, queue scripts, Table I."""


import pytest

from tmdflow.analysis.table1 import render, table1_rows
from tmdflow.errors import InputError
from tmdflow.fireworks import TmdflowStepTask, build_workflows
from tmdflow.queue import job_script
from tmdflow.workflow_spec import load_workflow
from tests.helpers import ROOT, material_doc


ROOT = ROOT


def test_shipped_workflows_validate():
    z = load_workflow(ROOT / "workflows" / "zhu2011.yaml")
    assert z.materials == ["MoS2", "MoSe2", "WS2", "WSe2"] and z.structures == ["monolayer", "bulk"]
    assert z.steps[0] == "relax" and z.steps[-1] == "figures" and "analysis" in z.steps
    assert z.model_copy(update={"calculator": "wien2k"}).calculator_steps()[-1] == "analysis"  # QE-only left out
    q = load_workflow(ROOT / "workflows" / "quick.yaml")
    assert q.preset == "quick" and q.structures == ["monolayer"]
    assert load_workflow(ROOT / "workflows" / "quick.yaml", preset="paper").preset == "paper"
    for path in sorted((ROOT / "workflows").glob("*.yaml")):  # every shipped file loads
        assert load_workflow(path).name == path.stem
    ph = load_workflow(ROOT / "workflows" / "phonons.yaml")
    assert ph.steps[0] == "relax" and ph.steps[-1] == "phonons" and ph.structures == ["monolayer"]


def test_errors_name_line_and_field(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\nmaterials:\n  - MoS2\n  - XyS2\nstructures: [trilayer]\nkmesh: 3\n")
    with pytest.raises(InputError) as err:
        load_workflow(f)
    text = str(err.value)
    assert f"{f}:3: materials" in text and "Xy" in text
    assert f"{f}:5: structures" in text
    assert f"{f}:6: kmesh" in text and "Extra inputs" in text


def test_second_variational_workflow_needs_the_right_steps(tmp_path):
    f = tmp_path / "sv.yaml"
    f.write_text("name: sv\npreset: second_variational\nmaterials: [MoS2]\nsteps: [scf_soc, bands_soc, analysis]\n")
    with pytest.raises(InputError, match="second_variational needs scf_sr"):
        load_workflow(f)


def test_workflows_are_chained_fireworks_with_typed_tasks():
    wfs = build_workflows(load_workflow(ROOT / "workflows" / "zhu2011.yaml"))
    assert len(wfs) == 8  # 4 materials x {monolayer, bulk}
    wf = wfs[0]
    prefix, digest = wf.metadata["tmdflow_key"].split("@")  # the settings hash (tmdflow.identity)
    assert prefix == "zhu2011:MoS2-monolayer-paper" and len(digest) == 10
    names = [fw.name for fw in sorted(wf.fws, key=lambda fw: -fw.fw_id)]
    assert names == [f"MoS2-monolayer-{s}" for s in ("relax", "scf_sr", "scf_soc", "bands_soc", "analysis",
                                                      "bands_sr", "soc_map", "wannier_map", "figures")]
    task = wf.fws[0].tasks[0]
    assert isinstance(task, TmdflowStepTask) and task["calculator"] == "espresso"
    # links: each step is the child of the previous one
    assert sum(len(v) for v in wf.links.values()) == 8  # a chain of 9 steps
    priorities = [fw.spec["_priority"] for fw in wf.fws]
    assert priorities == sorted(priorities) and len(set(priorities)) == 9  # depth-first: a material at a time


def test_queue_scripts_by_content(tmp_path):
    slurm = job_script(None, tmp_path)
    assert "#SBATCH --nodes=1" in slurm and "#SBATCH --time=04:00:00" in slurm
    assert f"cd {tmp_path}" in slurm
    # a job runs Fireworks one after another until its walltime (4 h) minus the 600 s margin
    assert "tmdflow launch --max-seconds 13800" in slurm and "--max-launches" not in slurm
    pbs = job_script(ROOT / "inputs" / "queue" / "pbs.yaml", tmp_path)
    assert "#PBS -l walltime=04:00:00" in pbs and "module load quantum-espresso" in pbs


def test_table1_shows_paper_value_and_deviation():
    rows = table1_rows([material_doc(dvb=149.1), material_doc("WSe2", dvb=465.3)])
    mos2 = rows[0]
    assert mos2["dvb_paper"] == 148 and mos2["dvb_dev"] == pytest.approx(1.1)
    md = render(rows, "markdown")
    assert "| MoS2 |" in md and "149.1" in md and "+1.1" in md
    assert render(rows, "csv").splitlines()[0].startswith("formula,settings,monolayer_a_angstrom")  # readable names (issue 24)
    tex = render(rows, "latex")
    assert r"\begin{tabular}" in tex and r"$\Delta_{\mathrm{VB}}(K)$" in tex  # math, not $\Delta$\_VB (issue 24)


def test_table1_reports_the_bulk_gap_and_where_its_band_edges_are():
    import dataclasses

    bulk = material_doc(dim="bulk")
    bulk = bulk.model_copy(update={"splitting": dataclasses.replace(
        bulk.splitting, gap_ev=0.874, direct_gap_at_k=False, vbm_location="Gamma", cbm_location="0.55 Gamma-K")})
    row = table1_rows([material_doc(), bulk])[0]
    assert row["gap_type"] == "direct at K"  # the monolayer
    assert row["bk_gap"] == pytest.approx(0.874) and row["bk_edges"] == "indirect: VBM at Gamma, CBM at 0.55 Gamma-K"
    assert "indirect: VBM at Gamma, CBM at 0.55 Gamma-K" in render([row], "markdown")
