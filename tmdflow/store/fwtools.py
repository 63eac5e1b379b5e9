"""FireWorks' own tools (``lpad``) on tmdflow's database, safely.

* ``tmdflow lpad ARGS...`` runs FireWorks' ``lpad`` command in this process on tmdflow's
  connection: for the embedded store under its lock (a running launcher makes it wait, then
  StoreBusy) with an atomic checkpoint afterwards; for MongoDB with the client of
  TMDFLOW_DB_URI (password included, never printed).
* ``launchpad_yaml(settings)`` is the ``my_launchpad.yaml`` FireWorks' tools read for a MongoDB
  server -- without the password (FireWorks reads it only from that file, so the user adds it,
  or uses ``tmdflow lpad``).  For the embedded store there is none: direct ``lpad``/``rlaunch``
  on the file are refused (see embedded.py).
"""

from __future__ import annotations

from typing import Sequence

from ..errors import InputError, StoreConfigError
from ..settings import Settings
from .connection import launchpad_client, connect, embedded_path, mongo_client
from .uri import parse, redact


def run_lpad(settings: Settings, argv: Sequence[str]) -> int:
    argv = list(argv)
    if any(a in ("-l", "--launchpad_file", "--launchpad-file") or a.startswith("--launchpad_file=") for a in argv):
        raise InputError("tmdflow lpad uses tmdflow's database; -l/--launchpad_file is not accepted",
                         "drop -l (the database comes from TMDFLOW_DB_URI / ~/.tmdflow.yaml)")
    if argv[:1] in (["reset"], ["init"]):
        raise InputError(f"'lpad {argv[0]}' is not run through tmdflow",
                         "tmdflow db init creates the database; tmdflow db backup/restore replace its content")
    conn = connect(settings)  # a writer: embedded -> holds the lock until this process exits
    from fireworks.scripts import lpad_run

    client = conn.embedded.client if conn.embedded is not None else conn.launchpad.connection
    original = lpad_run.get_lp
    lpad_run.get_lp = lambda args: conn.launchpad
    try:
        with launchpad_client(client):
            try:
                rc = lpad_run.lpad(argv) or 0
            except SystemExit as exc:  # argparse: --help, bad arguments
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        lpad_run.get_lp = original
        conn.checkpoint()
    return rc


def launchpad_yaml(settings: Settings) -> str:
    """my_launchpad.yaml for FireWorks' tools on the MongoDB of ``settings`` (no password)."""
    import yaml

    uri = settings.db_uri
    if embedded_path(uri) is not None:
        raise InputError(
            "the embedded store has no launchpad file: FireWorks' tools cannot share its lock",
            "run FireWorks' lpad through tmdflow: tmdflow lpad get_wflows -d less (any lpad arguments)",
        )
    mongo_client(uri, settings.db_timeout_seconds)  # valid and reachable
    from pymongo import uri_parser

    try:
        parsed = uri_parser.parse_uri(uri)
    except Exception as exc:  # noqa: BLE001 -- already checked by mongo_client; be safe
        raise StoreConfigError(f"db_uri '{redact(uri)}' cannot be parsed", str(exc)[:200]) from None
    raw = parse(uri)
    options = {k: v for k, v in parsed["options"].items()
               if k.lower() not in ("authsource",) and "password" not in k.lower()}
    doc: dict = {"name": settings.db_name}
    single = len(parsed["nodelist"]) == 1 and raw.scheme == "mongodb"
    if single:
        host, port = parsed["nodelist"][0]
        doc.update(host=host, port=port, uri_mode=False)
        if parsed["username"]:
            doc["username"] = parsed["username"]
            doc["authsource"] = parsed["options"].get("authSource", parsed["database"] or "admin")
        if options:
            doc["mongoclient_kwargs"] = {k: v for k, v in options.items()}
    else:  # several hosts or mongodb+srv://: FireWorks' URI mode, the URI without its password
        no_password = redact(uri).replace(":***@", "@")
        doc.update(host=no_password, uri_mode=True)
    note = ("# FireWorks' lpad/rlaunch configuration for tmdflow's database, written by\n"
            "# 'tmdflow db launchpad-file'.  It holds no password: FireWorks reads one only from this\n"
            "# file, so either add a line 'password: ...' yourself (keep the file mode 600), or\n"
            "# run FireWorks' commands as 'tmdflow lpad ...', which take it from TMDFLOW_DB_URI.\n")
    if not single and parsed["username"]:
        note += ("# URI mode: put the percent-encoded password into 'host' after the user name\n"
                 "# (mongodb://user:PASSWORD@...) to use this file directly.\n")
    return note + yaml.safe_dump(doc, sort_keys=False)


def write_launchpad_yaml(settings: Settings, path) -> str:
    import os
    from pathlib import Path

    text = launchpad_yaml(settings)
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return str(path)
