"""Results in the field's types (issue 24): the top-level API, pymatgen / ASE / pandas objects
from the store, round-tripped against the stored numbers and against pw.x's own output.

A real workflow at small settings (MoS2 monolayer, preset ``test`` with a 12-point
Gamma-M-K-Gamma path: scf_sr, scf_soc, bands_soc, analysis, bands_sr with projwfc.x weights;
about 3 minutes on 2 cores) runs once for the module through ``tmdflow submit`` + ``launch``;
the legacy store of tests/fixtures (written by an earlier version, before structures, reciprocal
lattices and identities were stored) checks that older documents convert too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.helpers import FIXTURES, ROOT

FIXTURES = FIXTURES
LEGACY = FIXTURES / "legacy_store" / "store.json"
WORKFLOW = """name: objects
calculator: espresso
preset: test
overrides: {path_points: 12}
materials: [MoS2]
structures: [monolayer]
steps: [scf_sr, scf_soc, bands_soc, analysis, bands_sr]
"""


def _env(root: Path, store: Path) -> dict:
    return {**os.environ, "TMDFLOW_DB_URI": f"embedded:{store}", "TMDFLOW_WORK_DIR": str(root / "runs"),
            "TMDFLOW_NPROCS": str(min(2, os.cpu_count() or 1)), "TMDFLOW_CONFIG": os.devnull,
            "PYTHONPATH": str(ROOT)}


def _tmdflow(env, *args, rc=0):
    proc = subprocess.run([sys.executable, "-m", "tmdflow.cli", *args], env=env, capture_output=True, text=True)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    return proc


def _settings(env):
    from tmdflow.settings import load_settings

    return load_settings(env={k: v for k, v in env.items() if k.startswith("TMDFLOW_")}, config_file=Path(os.devnull))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tmdflow.settings import load_settings

    root = tmp_path_factory.mktemp("objects")
    env = _env(root, root / "store.json")
    env["TMDFLOW_PSEUDO_DIR"] = str(load_settings().pseudo_dir)  # the shared generated-UPF cache
    (root / "wf.yaml").write_text(WORKFLOW)
    _tmdflow(env, "submit", str(root / "wf.yaml"))
    _tmdflow(env, "launch")
    settings = _settings(env)
    import tmdflow

    (material,) = tmdflow.query(settings=settings)
    return {"root": root, "env": env, "settings": settings, "material": material,
            "run_dir": root / "runs" / material.material_id}


# -- the package --------------------------------------------------------------------------


def test_import_tmdflow_is_light_and_exposes_the_api():
    code = ("import sys, time; t = time.perf_counter(); import tmdflow; dt = time.perf_counter() - t; "
            "heavy = [m for m in ('pymatgen.core', 'pandas', 'pymongo', 'fireworks', 'ase', 'tmdflow.api') "
            "if m in sys.modules]; print(heavy, dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "[]", out  # nothing heavy is imported by `import tmdflow`
    import tmdflow
    import tmdflow.api as api

    for name in ("submit", "launch", "status", "query", "table1", "bandstructure", "dataframe", "structure"):
        assert getattr(tmdflow, name) is getattr(api, name)
    assert set(api.__all__) == set(tmdflow.__all__) - {"__version__"}
    assert not {"Path", "json", "dataclass", "Callable", "ResultsStore"} & set(api.__all__)
    assert all(callable(getattr(api, n)) for n in api.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tmdflow.nope


# -- a real run ---------------------------------------------------------------------------


def test_structure_of_the_result_as_pymatgen_and_ase(run):
    m = run["material"]
    s, atoms = m.to_structure(), m.to_atoms()
    assert s.composition.reduced_formula == "MoS2" and atoms.get_chemical_formula() == "MoS2"
    assert s.lattice.a == pytest.approx(m.table1.a_angstrom, abs=1e-9)
    z = sorted(atoms.positions[:, 2])
    assert z[-1] - z[1] == pytest.approx(m.table1.d_angstrom, abs=1e-9) or \
        z[1] - z[0] == pytest.approx(m.table1.d_angstrom, abs=1e-9)
    assert np.allclose(s.cart_coords, atoms.positions) and np.allclose(s.lattice.matrix, atoms.cell[:])
    # the task documents convert the same way
    import tmdflow
    from tmdflow.store.connection import connect
    from tmdflow.store.results import ResultsStore

    task = ResultsStore(connect(run["settings"], readonly=True).db).task(f"{m.material_id}-bands_soc")
    assert np.allclose(task.to_atoms().positions, atoms.positions)
    assert tmdflow.structure(m.material_id, settings=run["settings"]) == m.structure


def test_soc_bandstructure_round_trips_to_the_stored_numbers_and_to_pw_x(run):
    import tmdflow
    from pymatgen.electronic_structure.bandstructure import BandStructureSymmLine
    from pymatgen.electronic_structure.core import Spin
    from tmdflow.calculators.espresso.parsers import parse_pw_xml

    m = run["material"]
    bs = tmdflow.bandstructure(m, settings=run["settings"])
    assert isinstance(bs, BandStructureSymmLine) and not bs.is_spin_polarized
    labels = [k.label for k in bs.kpoints]
    assert labels[0] == labels[-1] == "\\Gamma" and "M" in labels and "K" in labels
    assert [b["name"] for b in bs.branches] == ["\\Gamma-M", "M-K", "K-\\Gamma"]
    # pw.x's own output of the bands run: the same reciprocal lattice and eigenvalues at K
    pw = parse_pw_xml(run["run_dir"] / "soc" / "bands_soc.xml").bands
    assert np.allclose(bs.lattice_rec.matrix, pw.reciprocal_cell, atol=1e-6)
    ik = labels.index("K")
    ik_pw = int(np.argmin(np.linalg.norm(pw.kpoints_crystal - [1 / 3, 1 / 3, 0], axis=1)))
    e = bs.bands[Spin.up]
    assert np.allclose(e[:, ik], pw.eigenvalues[ik_pw], atol=1e-4)  # float32 storage: ~1e-6 eV
    n = pw.n_occupied
    delta_vb = (e[n - 1, ik] - e[n - 2, ik]) * 1000
    assert abs(delta_vb - m.splitting.delta_vb_k_mev) < 0.1  # meV
    vbm, cbm = e[n - 1].max(), e[n].min()
    assert bs.get_vbm()["energy"] == pytest.approx(vbm) and vbm < bs.efermi < cbm
    assert bs.get_band_gap()["energy"] == pytest.approx(m.splitting.gap_ev, abs=1e-4)  # direct at K, on the path
    assert bs.structure.composition.reduced_formula == "MoS2"


def test_sigma_z_and_orbital_weights_as_side_arrays(run):
    import tmdflow
    from pymatgen.electronic_structure.core import Spin

    m = run["material"]
    bs = tmdflow.bandstructure(m, settings=run["settings"])
    p = tmdflow.band_projections(m, settings=run["settings"])
    assert p.sigma_z.shape == bs.bands[Spin.up].shape and not p.orbital_weights
    ik = [k.label for k in bs.kpoints].index("K")
    top, second = m.splitting.vb_k_sigma_z
    nocc = int(np.argmax(bs.bands[Spin.up][:, ik] > bs.efermi))  # first empty band
    assert p.sigma_z[nocc - 1, ik] == pytest.approx(top, abs=1e-4)
    assert p.sigma_z[nocc - 2, ik] == pytest.approx(second, abs=1e-4)
    sr = tmdflow.bandstructure(m, kind="sr", settings=run["settings"])
    w = tmdflow.band_projections(m, kind="sr", settings=run["settings"]).orbital_weights
    assert set(w) == {"M_dz2", "M_dxy_dx2y2", "X_pz", "X_pxpy"} and p.sigma_z is not None
    assert w["M_dz2"].shape == sr.bands[Spin.up].shape
    ik = [k.label for k in sr.kpoints].index("K")
    n_sr = int(np.argmax(sr.bands[Spin.up][:, ik] > sr.efermi))
    assert w["M_dz2"][n_sr, ik] > 0.7 and w["M_dxy_dx2y2"][n_sr - 1, ik] > 0.7  # Zhu et al. Fig. 4 at K


def test_bad_band_requests_are_named_errors(run):
    import tmdflow
    from tmdflow.errors import InputError, ResultNotFound

    with pytest.raises(InputError, match="unknown band-structure kind"):
        tmdflow.bandstructure(run["material"], kind="map", settings=run["settings"])
    with pytest.raises(ResultNotFound):
        tmdflow.bandstructure("MoS2-monolayer-nope", settings=run["settings"])


def test_dataframe_one_row_per_result_units_in_the_names(run):
    import tmdflow

    df = tmdflow.dataframe(settings=run["settings"])
    m = run["material"]
    assert len(df) == 1 and df.loc[0, "material_id"] == m.material_id
    assert df.loc[0, "delta_vb_k_mev"] == m.splitting.delta_vb_k_mev
    assert df.loc[0, "delta_cb_k_mev"] == m.splitting.delta_cb_k_mev > 0  # MoS2: Table I's sign
    assert df.loc[0, "a_angstrom"] == m.table1.a_angstrom and df.loc[0, "gap_type"] == "direct at K"
    assert {"delta_e_gamma_k_mev", "gap_ev", "d_angstrom", "settings"} <= set(df.columns)
    assert df["delta_vb_k_mev"].dtype == float
    empty = tmdflow.dataframe(formula="WTe2", settings=run["settings"])
    assert len(empty) == 0 and list(empty.columns) == list(df.columns)


@pytest.mark.parametrize("name, fmt", [("s.cif", "cif"), ("POSCAR", "vasp"), ("s.extxyz", "extxyz"),
                                       ("s.vasp", "vasp"), ("s.json", "json"), ("s.xsf", "xsf")])
def test_structure_command_writes_the_format_its_suffix_names(run, tmp_path, name, fmt):
    from ase.io import read

    m = run["material"]
    out = _tmdflow(run["env"], "structure", m.material_id, "-o", str(tmp_path / name))
    assert "wrote" in out.stdout
    back = read(tmp_path / name, format=fmt)
    assert back.get_chemical_formula() == "MoS2"
    assert np.allclose(back.cell[:], m.to_atoms().cell[:], atol=1e-5)
    assert np.allclose(back.get_scaled_positions(wrap=True), m.to_atoms().get_scaled_positions(wrap=True), atol=1e-5)


def test_structure_command_errors(run, tmp_path):
    out = _tmdflow(run["env"], "structure", "nope", "-o", str(tmp_path / "s.cif"), rc=4)
    assert "no material result or task 'nope'" in out.stderr and "Traceback" not in out.stderr
    out = _tmdflow(run["env"], "structure", run["material"].material_id, "-o", str(tmp_path / "s.nope"), rc=2)
    assert "no writer for 's.nope'" in out.stderr and not (tmp_path / "s.nope").exists()


# -- documents written by an earlier version ------------------------------------------------


@pytest.fixture
def legacy(tmp_path):
    store = tmp_path / "store.json"
    shutil.copy(LEGACY, store)
    env = _env(tmp_path, store)
    return {"env": env, "settings": _settings(env), "store": store}


def test_legacy_documents_convert_from_their_tasks(legacy):
    """The legacy store (WIEN2k test double, MoS2 bulk): its material stores no structure and
    its band document no reciprocal lattice; both come from the task documents, the file is
    never written."""
    import tmdflow
    from pymatgen.electronic_structure.core import Spin
    from tmdflow.store.documents import decode_array

    before = legacy["store"].read_bytes()
    (m,) = tmdflow.query(settings=legacy["settings"])
    assert m.identity is None and m.settings_label == "test (legacy)"
    s = m.to_structure()
    assert s.composition.reduced_formula == "MoS2" and s.lattice.c == pytest.approx(m.table1.c_angstrom)
    bs = tmdflow.bandstructure(m.material_id, settings=legacy["settings"])
    assert [k.label for k in bs.kpoints] == ["\\Gamma", "K", "K'", "M", "Q"]  # no path: the special points
    raw = json.loads(before)["tmdflow"]["bandstructures"]["documents"][0][1]
    stored = decode_array(raw["eigenvalues_ev"])
    assert np.allclose(bs.bands[Spin.up].T, stored)
    n = int(raw["n_electrons"])
    e_k = bs.bands[Spin.up][:, 1]
    # bulk 2H: Kramers pairs; Delta_VB(K) is the next distinct level below the top one
    below = e_k[:n][e_k[:n] < e_k[n - 1] - 1e-3]
    assert abs((e_k[n - 1] - below.max()) * 1000 - m.splitting.delta_vb_k_mev) < 0.1
    df = tmdflow.dataframe(settings=legacy["settings"])
    assert df.loc[0, "settings"] == "test (legacy)" and np.isnan(df.loc[0, "delta_cb_k_mev"])  # sign unknown
    assert legacy["store"].read_bytes() == before


def test_legacy_structure_command(legacy, tmp_path):
    from ase.io import read

    _tmdflow(legacy["env"], "structure", "MoS2-bulk-test-wien2k", "-o", str(tmp_path / "bulk.cif"))
    assert read(tmp_path / "bulk.cif").get_chemical_formula() == "Mo2S4"
