"""The MongoDB path against the strict in-process server of tests/strict_mongo.py (issue 22 §6),
and password redaction for every URI shape (issue 21 §3)."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from tests.strict_mongo import check_document, check_update
from tmdflow.settings import load_settings
from tmdflow.store.uri import redact, scrub
from tests.helpers import QE_WORKFLOW_TEMPLATE, material_doc

# -- redaction ---------------------------------------------------------------------------------

REDACT = [
    ("mongodb://u:pw1234@h", "mongodb://u:***@h", ["pw1234"]),
    ("mongodb://alice:s3cret@db.example.org:27017/x", "mongodb://alice:***@db.example.org:27017/x", ["s3cret"]),
    ("mongodb://u:p@ss@h:27017/", "mongodb://u:***@h:27017/", ["p@ss", "ss@"]),  # unencoded @
    ("mongodb://u:a@b@c@h/", "mongodb://u:***@h/", ["a@b@c"]),
    ("mongodb://:topsecret@h/", "mongodb://:***@h/", ["topsecret"]),  # empty user name
    ("mongodb://u:p%40ss%2Fw0rd@h/db?authSource=admin", "mongodb://u:***@h/db?authSource=admin", ["p%40ss", "w0rd"]),
    ("mongodb+srv://bob:s3cret@cluster0.example.net/", "mongodb+srv://bob:***@cluster0.example.net/", ["s3cret"]),
    ("mongodb://u:pa/ss@h/db", "mongodb://u:***@h/db", ["pa/ss"]),  # unencoded / in the password
    ("mongodb://u:pa?ss@h/db", "mongodb://u:***@h/db", ["pa?ss"]),  # unencoded ? in the password
    ("mongodb://u:pw:with:colons@h1,h2:27018/?replicaSet=rs", "mongodb://u:***@h1,h2:27018/?replicaSet=rs",
     ["with:colons"]),
    ("mongodb://h/?authSource=admin&password=hunter22", "mongodb://h/?authSource=admin&password=***", ["hunter22"]),
    ("mongodb://u:pw@h/?tls=true&tlsCertificateKeyFilePassword=keypass99&authSource=admin",
     "mongodb://u:***@h/?tls=true&tlsCertificateKeyFilePassword=***&authSource=admin", ["keypass99"]),
    ("mongodb://h:27017/", "mongodb://h:27017/", []),
    ("mongodb://justuser@h/", "mongodb://justuser@h/", []),
]


@pytest.mark.parametrize("uri,expected,secrets", REDACT, ids=[r[0] for r in REDACT])
def test_redact_hides_every_password(uri, expected, secrets):
    assert redact(uri) == expected
    for secret in secrets:
        assert secret not in redact(uri)


def test_scrub_removes_secrets_quoted_by_a_driver_error():
    uri = "mongodb://u:p%40ssw0rd@h/?tlsCertificateKeyFilePassword=keypass99"
    message = f"cannot connect to {uri}: auth failed for password p@ssw0rd (p%40ssw0rd); key keypass99"
    clean = scrub(message, uri)
    assert "ssw0rd" not in clean and "keypass99" not in clean
    assert "mongodb://u:***@h/" in clean


# -- the strict server refuses what a real one refuses ------------------------------------------

def test_the_strict_checks_refuse_what_a_server_refuses():
    import numpy as np
    from bson.errors import InvalidDocument
    from pymongo.errors import DocumentTooLarge

    for bad in ({"x": np.float32(1.0)}, {"x": np.int64(1)}, {"x": np.bool_(True)}, {"x": np.arange(3)}, {"x": {1, 2}}, {"x": object()}):
        with pytest.raises((InvalidDocument, TypeError)):
            check_document(bad)
    for bad in ({"a.b": 1}, {"$set": 1}, {"x": [{"$y": 1}]}):
        with pytest.raises(InvalidDocument):
            check_document(bad)
    with pytest.raises(DocumentTooLarge):
        check_document({"x": "a" * (17 * 1024 * 1024)})
    with pytest.raises(ValueError):
        check_update({"state": "COMPLETED"})  # a replacement passed as an update
    check_update({"$set": {"a.b": datetime.now(timezone.utc)}})  # dotted paths in operators are fine


def _settings(strict_mongo, tmp_path, **kw):
    return load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=strict_mongo.uri,
                         work_dir=tmp_path / "runs", **kw)


def test_one_client_per_process_shared_with_the_launchpad(strict_mongo, tmp_path):
    from tmdflow.store.connection import connect

    s = _settings(strict_mongo, tmp_path)
    writer, reader = connect(s), connect(s, readonly=True)
    assert connect(s) is writer
    assert writer.launchpad.connection is writer.db.client is reader.db.client is strict_mongo.client
    assert len(strict_mongo.client_kwargs) == 1  # one MongoClient(...) call in the process
    assert strict_mongo.client_kwargs[0]["serverSelectionTimeoutMS"] == 5000  # the default timeout
    assert "SECRET" not in writer.description and "user:***@db.example.invalid" in writer.description


def test_indexes_are_made_by_writers_only_fireworks_included(strict_mongo, tmp_path):
    from tmdflow.store.connection import connect, ensure_all_indexes, reset_cache

    s = _settings(strict_mongo, tmp_path)
    reader = connect(s, readonly=True)  # an empty database: a reader creates nothing
    assert strict_mongo.index_calls == [] and strict_mongo.writes == []
    with pytest.raises(Exception):
        ensure_all_indexes(reader)
    writer = connect(s)
    fw = strict_mongo.client["tmdflow"]["fireworks"].index_information()
    assert any(ix.get("unique") and ix["key"] == [("fw_id", 1)] for ix in fw.values())  # FireWorks' tuneup
    tasks = strict_mongo.client["tmdflow"]["tasks"].index_information()
    assert any(ix.get("unique") and ix["key"] == [("task_id", 1)] for ix in tasks.values())
    n = len(strict_mongo.index_calls)
    connect(s)
    assert len(strict_mongo.index_calls) == n  # once per process
    reset_cache()
    strict_mongo.client["tmdflow"]["tasks"].drop_indexes()
    ensure_all_indexes(connect(s))  # what db restore calls after replacing the content
    assert any(ix.get("unique") for ix in strict_mongo.client["tmdflow"]["tasks"].index_information().values())
    del writer


def test_timestamps_are_bson_dates_and_old_string_timestamps_still_load(strict_mongo, tmp_path):
    from tmdflow.store.connection import connect
    from tmdflow.store.documents import TaskDocument
    from tmdflow.store.results import ResultsStore

    store = ResultsStore(connect(_settings(strict_mongo, tmp_path)).db)
    store.upsert_task(TaskDocument(task_id="MoS2-monolayer-test-scf_soc", formula="MoS2", dimensionality="monolayer",
                                   preset="test", step="scf_soc", calculator="espresso"))
    store.upsert_material(material_doc())
    raw = strict_mongo.client["tmdflow"]["tasks"].find_one({})
    assert isinstance(raw["created_at"], datetime) and isinstance(raw["updated_at"], datetime)
    assert isinstance(strict_mongo.client["tmdflow"]["materials"].find_one({})["updated_at"], datetime)
    first = raw["created_at"]
    store.upsert_task(store.task("MoS2-monolayer-test-scf_soc"))  # re-run: created_at kept
    assert strict_mongo.client["tmdflow"]["tasks"].find_one({})["created_at"] == first
    strict_mongo.client["tmdflow"]["tasks"].insert_one({  # written by tmdflow before this change
        "task_id": "old", "formula": "MoS2", "dimensionality": "monolayer", "preset": "test", "step": "scf_soc",
        "calculator": "espresso", "created_at": "2025-01-02T03:04:05.123456+00:00",
        "updated_at": "2025-01-02T03:04:05.123456+00:00"})
    assert store.task("old").created_at.year == 2025


def test_a_document_too_large_is_refused_before_the_write(strict_mongo, tmp_path):
    from tmdflow.errors import DocumentTooLarge, StoreError
    from tmdflow.store.connection import connect
    from tmdflow.store.documents import BandStructureDoc
    from tmdflow.store.results import ResultsStore

    store = ResultsStore(connect(_settings(strict_mongo, tmp_path)).db)
    huge = BandStructureDoc(bandstructure_id="MoS2-monolayer-test-soc_path", kpoints_crystal={"data": "x"},
                            eigenvalues_ev={"data": "e" * (16 * 1024 * 1024)}, n_electrons=26)
    with pytest.raises(DocumentTooLarge, match="bandstructure_id='MoS2-monolayer-test-soc_path'") as err:
        store.put_bandstructure(huge)
    assert isinstance(err.value, StoreError) and err.value.exit_code == 60 and "nothing was written" in str(err.value)
    assert strict_mongo.client["tmdflow"]["bandstructures"].count_documents({}) == 0


def test_two_racing_submitters_add_a_workflow_once(strict_mongo, tmp_path):
    """Both read 'not submitted' before either inserts: the claim in tmdflow_submissions lets one
    win; the other reports the winner's workflow as already submitted."""
    from tmdflow.fireworks import submit
    from tmdflow.store import submissions
    from tmdflow.store.connection import connect
    from tmdflow.workflow_spec import load_workflow

    (tmp_path / "wf.yaml").write_text("name: race\npreset: test\nmaterials: [MoS2]\nstructures: [monolayer]\n"
                                      "steps: [scf_soc, bands_soc, analysis]\n")
    conn = connect(_settings(strict_mongo, tmp_path))
    spec = load_workflow(tmp_path / "wf.yaml")
    real_generations = submissions.generations
    raced = {}

    def generations_then_race(workflows, keys):
        gens = real_generations(workflows, keys)
        if not raced:  # the other submitter inserts between this one's read and its claim
            raced["other"] = None
            raced["other"] = submit(conn, spec)
        return gens

    submissions.generations = generations_then_race
    try:
        (mine,) = submit(conn, spec)
    finally:
        submissions.generations = real_generations
    (other,) = raced["other"]
    assert not other.skipped and mine.skipped and mine.fw_ids == other.fw_ids
    assert conn.launchpad.workflows.count_documents({}) == 1
    (again,) = submit(conn, spec)  # later: the ordinary duplicate check
    assert again.skipped
    (forced,) = submit(conn, spec, force=True)  # --force still adds a second one
    assert not forced.skipped and conn.launchpad.workflows.count_documents({}) == 2
    states = {d["_id"]: d["state"] for d in conn.db[submissions.SUBMISSIONS].find({})}
    assert states == {f"{other.key}#0": "done", f"{other.key}#1": "done"}


# -- a real workflow on the strict server -------------------------------------------------------

WORKFLOW = QE_WORKFLOW_TEMPLATE.format(name="mongo")


@pytest.mark.qe
def test_a_real_workflow_on_mongodb_passes_the_strict_server_checks(strict_mongo, tmp_path, pseudo_dir):
    """submit -> launch (real pw.x, test preset) -> query/table1/status/report/db info through the
    CLI in this process, on mongodb://user:SECRET@...: every write of the run passes the strict
    checks; readers, even as a read-only user, neither write nor create indexes; a write as a
    read-only user is a named error; the password appears nowhere."""
    from tmdflow import cli
    from tmdflow.store.connection import reset_cache

    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    env = {"TMDFLOW_DB_URI": strict_mongo.uri, "TMDFLOW_CONFIG": os.devnull, "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": str(min(2, os.cpu_count() or 1))}
    runner = CliRunner()
    outputs = []

    def tmdflow(*args, code=0):
        result = runner.invoke(cli.main, list(args), env=env, catch_exceptions=False)
        text = result.output  # stdout and stderr
        outputs.append(text)
        assert result.exit_code == code, text
        assert "Traceback" not in text
        return result

    umask = os.umask(0o022)  # a common default: tmdflow must still write nothing world-readable
    try:
        assert "added" in tmdflow("submit", str(tmp_path / "wf.yaml")).output
        assert "already submitted" in tmdflow("submit", str(tmp_path / "wf.yaml")).output
        tmdflow("launch")
    finally:
        os.umask(umask)
    assert {"fireworks", "launches", "tasks", "materials", "bandstructures"} <= {c for c, _ in strict_mongo.writes}

    reset_cache()  # as a new process would, and as a user with the read role only
    strict_mongo.readonly = True
    strict_mongo.writes.clear()
    strict_mongo.index_calls.clear()
    rows = json.loads(tmdflow("query", "--formula", "MoS2", "--json").stdout)
    assert len(rows) == 1 and rows[0]["splitting.delta_vb_k_mev"] == pytest.approx(148, abs=10)
    assert "| MoS2 |" in tmdflow("table1").stdout
    assert "[COMPLETED]" in tmdflow("status").stdout
    tmdflow("report", "-o", str(tmp_path / "report.html"))
    assert json.loads(tmdflow("db", "info").stdout)["materials"] == 1
    tmdflow("db", "backup", str(tmp_path / "backup.json"))  # a reader too: it works for a read-only user
    assert strict_mongo.writes == [] and strict_mongo.index_calls == []
    denied = tmdflow("submit", str(tmp_path / "wf.yaml"), "--force", code=60)
    assert "did not allow this operation" in denied.output and "read-only user" in denied.output

    # issue 21 §3: the password is nowhere -- not in the database (launches' FireWorker records
    # included), not in any file (launches/*/FW.json, the backup, the report, pw.x's files), not in
    # any output; and no file tmdflow wrote is world-readable (FW.json was 0644)
    assert "SECRET" not in "\n".join(outputs)
    assert "SECRET" not in strict_mongo.dump()
    assert list((tmp_path / "runs").rglob("FW.json"))  # FireWorks wrote its launch records
    exposed = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name != "wf.yaml":
            if b"SECRET" in path.read_bytes():
                exposed.append(str(path))
            if path.stat().st_mode & stat.S_IROTH:
                exposed.append(f"{path} is world-readable ({stat.filemode(path.stat().st_mode)})")
    assert exposed == []
    assert any("user:***@db.example.invalid" in text for text in outputs)  # db info: redacted, not dropped


def _submit_one(strict_mongo, tmp_path):
    from tmdflow.fireworks import submit
    from tmdflow.store.connection import connect
    from tmdflow.workflow_spec import load_workflow

    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    conn = connect(_settings(strict_mongo, tmp_path))
    submit(conn, load_workflow(tmp_path / "wf.yaml"))
    return {"TMDFLOW_DB_URI": strict_mongo.uri, "TMDFLOW_CONFIG": os.devnull, "TMDFLOW_WORK_DIR": str(tmp_path / "runs")}


def test_a_server_fault_after_connecting_is_a_named_error(strict_mongo, tmp_path):
    """The permission (or the server) goes away after tmdflow connected: exit 60 with the
    server's reason, the password scrubbed, no traceback."""
    from tmdflow import cli

    env = _submit_one(strict_mongo, tmp_path)
    strict_mongo.readonly = True  # this process's connection is cached: the fault comes mid-command
    result = CliRunner().invoke(cli.main, ["priority", "*", "1"], env=env)
    assert result.exit_code == 60, result.output
    assert "not authorized" in result.output and "readWrite" in result.output
    assert "SECRET" not in result.output and "Traceback" not in result.output


def test_tmdflow_lpad_and_the_launchpad_file_on_mongodb(strict_mongo, tmp_path):
    import yaml
    from fireworks import LaunchPad

    from tmdflow import cli

    env = _submit_one(strict_mongo, tmp_path)
    count = CliRunner().invoke(cli.main, ["lpad", "get_fws", "-d", "count"], env=env)
    assert count.exit_code == 0 and count.output.strip() == "3", count.output
    path = tmp_path / "my_launchpad.yaml"
    out = CliRunner().invoke(cli.main, ["db", "launchpad-file", str(path)], env=env)
    assert out.exit_code == 0, out.output
    text = path.read_text()
    assert "SECRET" not in text and "SECRET" not in out.output
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    doc = yaml.safe_load(text)
    assert doc == {"name": "tmdflow", "host": "db.example.invalid", "port": 27017, "uri_mode": False,
                   "username": "user", "authsource": "admin"}
    from pymongo.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="password is required"):  # as the file's comment says
        LaunchPad.from_file(str(path))  # what FireWorks' lpad -l / rlaunch -l read
    assert "add a line 'password: ...'" in text
    path.write_text(text + "password: SECRET\n")  # the user's step
    lp = LaunchPad.from_file(str(path))
    assert (lp.host, lp.port, lp.name, lp.username, lp.authsource) == ("db.example.invalid", 27017, "tmdflow", "user",
                                                                      "admin")
    lp.connection.close()


def test_a_claim_left_by_a_dead_submitter_expires_and_a_live_one_is_reported(strict_mongo, tmp_path, monkeypatch):
    from datetime import timedelta

    from tmdflow.errors import AlreadySubmitted
    from tmdflow.fireworks import build_workflows, submit
    from tmdflow.store import submissions
    from tmdflow.store.connection import connect
    from tmdflow.workflow_spec import load_workflow

    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    conn = connect(_settings(strict_mongo, tmp_path))
    spec = load_workflow(tmp_path / "wf.yaml")
    (key,) = [wf.metadata["tmdflow_key"] for wf in build_workflows(spec)]
    claims = conn.db[submissions.SUBMISSIONS]
    claims.insert_one({"_id": f"{key}#0", "key": key, "generation": 0, "state": "pending", "host": "elsewhere",
                       "pid": 4242, "at": datetime.now(timezone.utc)})
    monkeypatch.setattr(submissions.wait_for_winner, "__defaults__", (0.5,))
    with pytest.raises(AlreadySubmitted, match="elsewhere pid 4242") as err:
        submit(conn, spec)  # a live submitter holds the claim and has not inserted yet
    assert err.value.exit_code == 60 and conn.launchpad.workflows.count_documents({}) == 0
    claims.update_one({"_id": f"{key}#0"}, {"$set": {"at": datetime.now(timezone.utc) - timedelta(hours=1)}})
    (taken,) = submit(conn, spec)  # its submitter died an hour ago: the claim is taken over
    assert not taken.skipped and conn.launchpad.workflows.count_documents({}) == 1
    assert claims.find_one({"_id": f"{key}#0"})["state"] == "done" and claims.find_one({"_id": f"{key}#0"})["pid"] == os.getpid()
