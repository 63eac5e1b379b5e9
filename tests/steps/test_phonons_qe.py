"""Phonon stage at small settings (real pw.x forces, phonopy): MoS2 monolayer, 2x2x1 supercell.

Reference frequencies at Gamma (PBE, MoS2 monolayer; e.g. Molina-Sanchez & Wirtz, PRB 84,
155413 (2011) and the Materials Cloud 2D database): E'' ~ 280, E' ~ 380, A1' ~ 400,
A2'' ~ 465 cm^-1.  Gamma is commensurate with the supercell, so its frequencies do not depend on
the supercell size; the tolerance (10 %) covers the small cut-off and k-mesh of the test preset.
"""

import os

import numpy as np
import pytest

from tmdflow.phonons import THZ_TO_CM1, stability_verdict
from tmdflow.presets import load_preset
from tmdflow.steps import StepRequest, run_step

pytestmark = pytest.mark.qe


@pytest.fixture(scope="module")
def mos2_phonons(tmp_path_factory, pseudo_dir):
    from tmdflow.settings import load_settings

    root = tmp_path_factory.mktemp("ph")
    settings = load_settings(work_dir=root, pseudo_dir=pseudo_dir, nprocs=min(2, os.cpu_count() or 1))
    req = StepRequest("t", "MoS2", "monolayer", load_preset("test"), "phonons")
    first = run_step(req, settings, root)
    again = run_step(req, settings, root)  # completed displacements are read back, not rerun
    return first, again


def test_mos2_is_dynamically_stable_with_the_known_gamma_frequencies(mos2_phonons):
    out, _ = mos2_phonons
    doc = out.phonons
    assert doc.stable, doc.verdict
    gamma = np.sort(np.array(doc.result["frequencies_thz"]["G"])) * THZ_TO_CM1
    assert np.all(np.abs(gamma[:3]) < 10)  # acoustic modes at Gamma (sum rule)
    optical = gamma[3:]
    for ref in (280, 380, 400, 465):
        assert np.min(np.abs(optical - ref)) / ref < 0.10, (ref, optical)
    assert len(doc.result["frequencies_thz"]["K"]) == 9 and len(doc.result["frequencies_thz"]["M"]) == 9
    assert any(p.endswith("phonons.png") for p in doc.files)


def test_completed_displacements_are_not_rerun(mos2_phonons):
    first, again = mos2_phonons
    assert again.task.outputs.reused_displacements == first.task.outputs.n_displacements
    assert again.phonons.result["frequencies_thz"] == first.phonons.result["frequencies_thz"]


def test_phonon_task_records_code_host_pseudopotentials_and_cpu(mos2_phonons):
    first, again = mos2_phonons
    for out in (first, again):  # the resumed step reads the same provenance back from the outputs
        t = out.task
        assert t.code_version.startswith("6.") and t.host
        assert set(t.pseudopotentials) == {"Mo", "S"}
        assert all(p.file.endswith(".rel1.UPF") and len(p.sha256) == 64 for p in t.pseudopotentials.values())
        assert t.outputs.pw_cpu_seconds > 0
    assert again.task.outputs.pw_cpu_seconds == first.task.outputs.pw_cpu_seconds
    assert again.task.wall_seconds == 0  # nothing ran the second time


def test_verdict_tolerates_only_a_small_flexural_dip_next_to_gamma():
    q = np.array([0.0, 0.05, 0.1, 0.5, 1.0])
    ok = np.array([[0.0, 5], [-0.2, 5], [0.1, 5], [2, 6], [3, 7]])
    assert stability_verdict(ok, q)[0]
    deep = ok.copy()
    deep[1, 0] = -1.0
    assert not stability_verdict(deep, q)[0]
    far = ok.copy()
    far[3, 0] = -0.2
    stable, why = stability_verdict(far, q)
    assert not stable and "away from Gamma" in why
