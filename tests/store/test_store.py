"""Results store and the embedded database: validation, upserts, locking, atomicity, corruption."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tmdflow.store.connection import connect, redact
from tmdflow.store.documents import (
    MaterialDocument, TaskDocument, decode_array, encode_array,
)
from tmdflow.errors import StoreCorrupted
from tmdflow.store.results import MaterialQuery, ResultsStore
from tmdflow.settings import load_settings
from tests.helpers import ROOT, material_doc


def _settings(tmp_path, name="store.json"):
    return load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=f"embedded:{tmp_path / name}",
                         work_dir=tmp_path / "runs")


def test_documents_are_validated():
    with pytest.raises(Exception):
        TaskDocument(task_id="x", formula="MoS2", dimensionality="trilayer", preset="q", step="scf", calculator="e")
    with pytest.raises(Exception):
        MaterialDocument(**{**material_doc().model_dump(), "unexpected": 1})


def test_array_encoding_round_trip_is_compact():
    e = np.random.default_rng(0).normal(size=(256, 60)) * 10
    enc = encode_array(e)
    assert np.allclose(decode_array(enc), e, atol=1e-5 * 10)  # float32
    assert len(enc["data"]) < e.nbytes  # smaller than the float64 array


def test_upserts_never_duplicate_and_queries_filter(tmp_path):
    conn = connect(_settings(tmp_path))
    store = ResultsStore(conn.db)
    store.upsert_material(material_doc(dvb=100.0))
    store.upsert_material(material_doc(dvb=149.1))  # re-run: update, not duplicate
    store.upsert_material(material_doc("WSe2", dvb=465.0))
    assert store.counts()["materials"] == 2
    assert [m.splitting.delta_vb_k_mev for m in store.materials(MaterialQuery(formula="MoS2"))] == [149.1]
    assert store.materials(MaterialQuery(dimensionality="bulk")) == []
    names = {ix["key"][0][0] for ix in conn.db["materials"].index_information().values() if ix.get("key")}
    assert {"material_id", "formula"} <= names


def test_embedded_store_persists_atomically_and_reopens(tmp_path):
    code = textwrap.dedent(f"""
        from tmdflow.settings import load_settings
        from tmdflow.store.connection import connect
        from tmdflow.store.results import ResultsStore
        from tests.helpers import material_doc
        s = load_settings(env={{}}, config_file=None, db_uri="embedded:{tmp_path / 'p.json'}")
        conn = connect(s)
        ResultsStore(conn.db).upsert_material(material_doc())
        conn.checkpoint()
        import os; os._exit(0)   # no clean exit: only the checkpoint may have saved it
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["tmdflow"]["materials"]["documents"]
    assert not list(tmp_path.glob(".p.json.*"))  # no temp file left behind


def test_a_second_process_waits_then_fails_clearly(tmp_path):
    connect(_settings(tmp_path, "busy.json"))  # this process holds the lock
    code = textwrap.dedent(f"""
        import sys
        from tmdflow.settings import load_settings
        from tmdflow.store.connection import connect
        from tmdflow.errors import TmdflowError
        s = load_settings(env={{}}, config_file=None, db_uri="embedded:{tmp_path / 'busy.json'}", db_lock_timeout=0.5)
        try:
            connect(s)
        except TmdflowError as e:
            print(e); sys.exit(e.exit_code)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 62
    assert "in use by pid" in proc.stdout and "MongoDB" in proc.stdout


def test_a_damaged_store_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"tmdflow": {"materials": ')  # truncated
    with pytest.raises(StoreCorrupted, match="damaged") as err:
        connect(_settings(tmp_path, "bad.json"))
    assert "tmdflow db restore" in str(err.value)
    assert path.read_text() == '{"tmdflow": {"materials": '  # left untouched


def test_password_is_never_printed():
    assert redact("mongodb://alice:s3cret@db.example.org:27017/x") == "mongodb://alice:***@db.example.org:27017/x"
    assert "s3cret" not in redact("mongodb+srv://bob:s3cret@cluster0/")


@pytest.mark.skipif(not os.environ.get("TMDFLOW_TEST_MONGODB_URI"), reason="no MongoDB server (set TMDFLOW_TEST_MONGODB_URI)")
def test_real_mongodb_roundtrip():
    s = load_settings(env={}, config_file=None, db_uri=os.environ["TMDFLOW_TEST_MONGODB_URI"], db_name="tmdflow_test")
    conn = connect(s)
    store = ResultsStore(conn.db)
    store.upsert_material(material_doc())
    store.upsert_material(material_doc())
    assert store.counts()["materials"] == 1
    conn.db.client.drop_database("tmdflow_test")
