"""What several test modules share: the repository's paths, running the ``tmdflow`` command in a
throw-away store, and a small valid material document.  (Fixtures live in tests/conftest.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bson.json_util

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
QE67 = FIXTURES / "qe-6.7"
#: a test double of a WIEN2k installation (tests/fake_wien2k/README)
FAKE_WIEN2K = TESTS / "fake_wien2k"
#: a one-structure, one-step workflow file; format with calc= and steps=
WORKFLOW_TEMPLATE = ("name: ext\ncalculator: {calc}\npreset: test\nmaterials: [MoS2]\nstructures: [bulk]\n"
                     "steps: [{steps}]\n")
#: the smallest real Quantum ESPRESSO workflow file (MoS2 monolayer, test preset: spin-orbit SCF,
#: bands, analysis); format with name=
QE_WORKFLOW_TEMPLATE = ("name: {name}\npreset: test\nmaterials: [MoS2]\nstructures: [monolayer]\n"
                        "steps: [scf_soc, bands_soc, analysis]\n")


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``tmdflow`` command with its own embedded store and work directory."""
    return {**os.environ, "TMDFLOW_DB_URI": f"embedded:{tmp_path / 'store.json'}",
            "TMDFLOW_WORK_DIR": str(tmp_path / "runs"), "TMDFLOW_NPROCS": "1", "WIENROOT": str(FAKE_WIEN2K),
            "PYTHONPATH": str(ROOT)}


def run_tmdflow(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """``python -m tmdflow.cli ARGS``; asserts success (or failure with ``ok=False``)."""
    proc = subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True)
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc


def stored_fireworks(tmp_path: Path) -> dict[str, dict]:
    """The Fireworks of the embedded store in ``tmp_path``, by name."""
    data = bson.json_util.loads((tmp_path / "store.json").read_text())["tmdflow"]
    return {doc["name"]: doc for _, doc in data["fireworks"]["documents"]}


def material_doc(formula="MoS2", dim="monolayer", dvb=149.1):
    """A valid material document (the quick preset's MoS2 numbers unless told)."""
    from tmdflow.analysis.splitting import SplittingResult
    from tmdflow.store.documents import MaterialDocument, Table1Entry

    return MaterialDocument(
        material_id=f"{formula}-{dim}-quick", formula=formula, dimensionality=dim, preset="quick",
        calculator="espresso", spin_orbit_mode="scf",
        table1=Table1Entry(a_angstrom=3.193, d_angstrom=1.567, relaxed=False),
        splitting=SplittingResult(delta_vb_k_mev=dvb, delta_cb_k_mev=2.9, delta_cb_sign_known=True,
                                  delta_e_gamma_k_mev=63.6, gap_ev=1.58, direct_gap_at_k=True,
                                  vbm_location="K", cbm_location="K", vb_k_sigma_z=None, cb_k_sigma_z=None,
                                  delta_vb_kprime_mev=None, spin_reversed_at_kprime=None, n_kpoints=5),
    )
