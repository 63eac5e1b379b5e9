"""FireWorks' ping thread against the rocket's end-of-launch write on the embedded store.

A rocket stops its ping thread and records the launch's end at the same moment; the thread's
last ping then races the record.  On mongomock (not thread-safe) the ping's lookup fails with
``No Launch exists`` or ``OrderedDict mutated during iteration``, a traceback on the launcher's
terminal (seen once in a clean-clone CI run).  Measured: 200 launches, each completed beside a
busy ping loop, raised in the ping thread 23 times on an unserialized LaunchPad and 0 times with
:class:`SerializedLaunchPad`; the 3-s loop below, with the lock replaced by a no-op, failed 8 of 8
runs.
"""

import threading
import time

from fireworks import Firework, FWorker
from fireworks.core.firework import FWAction
from fireworks.user_objects.firetasks.script_task import ScriptTask

from tmdflow.settings import load_settings
from tmdflow.store.connection import connect
from tmdflow.store.launchpad import SerializedLaunchPad


def test_pings_and_launch_completions_never_overlap_on_the_embedded_store(tmp_path):
    settings = load_settings(env={}, config_file=tmp_path / "none.yaml", db_uri=f"embedded:{tmp_path / 'store.json'}",
                             work_dir=tmp_path / "runs")
    conn = connect(settings)
    lpad = conn.launchpad
    assert isinstance(lpad, SerializedLaunchPad)
    lpad.add_wf(Firework(ScriptTask.from_str("true"), name="race"))
    _, launch_id = lpad.checkout_fw(FWorker(), str(tmp_path))
    errors: list[str] = []
    stop = threading.Event()
    pings = 0

    def ping_until_stopped():
        nonlocal pings
        while not stop.is_set():
            try:
                lpad.ping_launch(launch_id)
            except Exception as exc:  # what FireWorks' ping thread would die of
                errors.append(repr(exc))
                return
            pings += 1

    pinger = threading.Thread(target=ping_until_stopped)
    pinger.start()
    try:
        end = time.monotonic() + 3.0
        completions = 0
        while time.monotonic() < end and not errors:
            lpad.complete_launch(launch_id, FWAction(), "RUNNING")  # the rocket's replace of the launch
            conn.checkpoint()  # the embedded store's write-out, also beside the ping
            completions += 1
    finally:
        stop.set()
        pinger.join()
    assert errors == []
    # the lock is not fair, so the busy pinger lets through 2-17 completions in 3 s (measured); each
    # raced hundreds of pings
    assert completions >= 1 and pings > 10 * completions, (completions, pings)
