"""The database password never reaches the database, a file or any output (issue 21 §3).

Measured before, with ``db_uri: mongodb://tmdflow_user:SECRET@…``: the password was in the
FireWorker record of every ``launches`` document, in every ``launches/*/FW.json`` (mode 0644) and
in ``db backup`` files (0644).  Here a real test-preset workflow (real pw.x) runs against an
in-process MongoDB stand-in that checks every write as a server would (tests/strict_mongo.py),
configured as ``mongodb://user:SECRET@db.example.invalid:27017/``; then the database, every file
under the test's directory and every line tmdflow printed are searched for the secret."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner

from tmdflow.cli import main

pytestmark = pytest.mark.qe

WORKFLOW = ("name: secrets\npreset: test\nmaterials: [MoS2]\nstructures: [monolayer]\n"
            "steps: [scf_soc, bands_soc, analysis]\n")


def test_the_password_is_nowhere(strict_mongo, tmp_path, pseudo_dir):
    env = {"TMDFLOW_DB_URI": strict_mongo.uri, "TMDFLOW_WORK_DIR": str(tmp_path / "runs"),
           "TMDFLOW_PSEUDO_DIR": str(pseudo_dir), "TMDFLOW_NPROCS": str(min(2, os.cpu_count() or 1)),
           "TMDFLOW_CONFIG": os.devnull}
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    runner = CliRunner()
    printed = []
    umask = os.umask(0o022)  # a common default: tmdflow must still write nothing world-readable
    try:
        for args in (["submit", str(tmp_path / "wf.yaml")], ["launch"], ["status"], ["query"], ["table1"],
                     ["report", "-o", str(tmp_path / "report.html")], ["db", "backup", str(tmp_path / "b.json")],
                     ["db", "info"]):
            result = runner.invoke(main, args, env=env, catch_exceptions=False)
            printed.append(result.output)
            assert result.exit_code == 0, (args, result.output)
    finally:
        os.umask(umask)
    assert "MoS2" in printed[4]  # the workflow really ran: Table I has its row
    assert strict_mongo.writes  # ... and wrote through the strict stand-in
    assert "SECRET" not in strict_mongo.dump()  # launches' FireWorker records included
    launches = list((tmp_path / "runs").rglob("FW.json"))
    assert launches  # FireWorks wrote its launch records
    exposed = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            if b"SECRET" in path.read_bytes():
                exposed.append(str(path))
            if path.stat().st_mode & stat.S_IROTH and path != tmp_path / "wf.yaml":
                exposed.append(f"{path} is world-readable ({stat.filemode(path.stat().st_mode)})")
    assert exposed == []
    assert not any("SECRET" in text for text in printed)
    assert "user:***@db.example.invalid" in printed[-1]  # the description is redacted, not empty
