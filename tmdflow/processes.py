"""How tmdflow runs external programs (pw.x, bands.x, projwfc.x, WIEN2k scripts) so that none
outlives its launcher and an interrupted launcher stops cleanly.

* Each program starts in its own session (process group): a Ctrl-C at the terminal reaches only
  the launcher, which then stops the whole group (SIGTERM, SIGKILL after ``GRACE_SECONDS``).
* A parent-death signal (Linux ``PR_SET_PDEATHSIG``): when the launcher dies, even by SIGKILL,
  the kernel sends SIGTERM to the program; ``mpirun`` forwards it to its ranks.
* A pid file ``<directory>/.tmdflow-run.json`` names the host, the launcher's pid and the
  program's pids (``mpirun`` and its descendants, refreshed while it runs, touched every
  ``HEARTBEAT_SECONDS``); it is removed when the run ends.  A new run in the same directory
  checks it first: a run whose launcher still lives is refused (:class:`RunInProgress`); an
  orphan run (its launcher is gone) is stopped before the new one starts, so two pw.x never
  write the same files.  A pid file of another host (a shared file system) counts as a live run
  until it is ``STALE_SECONDS`` old (its job or node is gone).
* The launcher's SIGINT/SIGTERM handler only records the signal (:func:`request_stop`): the
  program's wait loop sees it within a second, stops the program and raises
  :class:`Interrupted`; between programs the launcher checks :func:`stop_requested`.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from .errors import RunInProgress

PID_FILE = ".tmdflow-run.json"
HEARTBEAT_SECONDS = 30  # a running program's pid file is touched this often ...
STALE_SECONDS = 180  # ... so one of another host untouched for this long belongs to a dead run
GRACE_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1

_stop_signal: int | None = None
_budget: tuple[float, float] | None = None  # (deadline as time.time(), the launcher's whole max_seconds)


class Interrupted(KeyboardInterrupt):
    """The launcher received SIGINT or SIGTERM while a program ran; the program was stopped."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def request_stop(signum: int, frame=None) -> None:
    """Signal handler: remember the first signal; the running program is stopped by its wait loop."""
    global _stop_signal
    if _stop_signal is None:
        _stop_signal = signum


def stop_requested() -> int | None:
    return _stop_signal


def reset_stop() -> None:
    global _stop_signal
    _stop_signal = None


try:  # loaded here, not in the forked child (no dynamic loading between fork and exec)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the pid file still protects a relaunch
    _prctl = None


def set_budget(max_seconds: float | None) -> None:
    """The launcher's time budget from now (``--max-seconds``; None: unlimited).  Every pw.x run
    gets the time left as its max_seconds, bands.x/projwfc.x are stopped at its end."""
    global _budget
    _budget = (time.time() + max_seconds, float(max_seconds)) if max_seconds else None


def deadline() -> float | None:
    return _budget[0] if _budget else None


def time_left() -> float | None:
    return _budget[0] - time.time() if _budget else None


def cut_short(max_seconds: float | None) -> bool:
    """Whether a run limited to ``max_seconds`` had clearly less than the launcher's whole budget
    (earlier runs used the rest: under 75 % of it and over 30 s less): stopping it without progress
    then says nothing about the budget, and the next launch resumes it."""
    return bool(_budget and max_seconds is not None and max_seconds < 0.75 * _budget[1]
                and _budget[1] - max_seconds > 30)


def _parent_death_signal(parent: int) -> Callable[[], None]:
    def in_child() -> None:  # runs in the child between fork and exec
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)
    return in_child


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def descendants(pid: int) -> list[int]:
    """``pid``'s descendants (from /proc), e.g. mpirun's ranks even in their own process groups."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal_all(pids: list[int], pgid: int | None, sig: int) -> None:
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_tree(pids: list[int], pgid: int | None, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the group and the pids, then SIGKILL what is still alive after ``grace`` s."""
    _signal_all(pids, pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    alive = [p for p in pids if _alive(p)]
    if alive:
        _signal_all(alive, pgid, signal.SIGKILL)


def read_pid_file(directory: Path) -> dict | None:
    try:
        return json.loads((Path(directory) / PID_FILE).read_text())
    except (OSError, ValueError):
        return None


def check_directory(directory: Path) -> None:
    """Before a run in ``directory``: refuse when another live launcher runs a program there; stop
    an orphan run left by a dead launcher on this host."""
    info = read_pid_file(directory)
    if not info:
        return
    here = socket.gethostname()
    pids = [int(p) for p in info.get("pids", [])]
    if info.get("host") != here:
        try:
            age = time.time() - (Path(directory) / PID_FILE).stat().st_mtime
        except OSError:
            return
        if age > STALE_SECONDS:  # its launcher stopped refreshing it: that job or node is gone
            (Path(directory) / PID_FILE).unlink(missing_ok=True)
            return
        raise RunInProgress(
            f"{info.get('program', 'a program')} (pids {pids}) was started in {directory} by launcher pid "
            f"{info.get('launcher_pid')} on host {info.get('host')} and has not finished",
            f"if that run is gone (its job ended, the node died), delete {Path(directory) / PID_FILE} and launch "
            "again; otherwise wait for it")
    launcher = int(info.get("launcher_pid", 0))
    if launcher and launcher != os.getpid() and _alive(launcher):
        raise RunInProgress(
            f"{info.get('program', 'a program')} is running in {directory} (pids {pids}) for launcher pid {launcher}",
            "wait for that launcher to finish, or stop it (kill -TERM its pid: it stops its programs and the step "
            "stays READY)")
    alive = [p for p in pids if _alive(p)]
    if alive:  # an orphan: its launcher died and the parent-death signal did not reach it
        stop_tree(alive, None)
    (Path(directory) / PID_FILE).unlink(missing_ok=True)


def run_program(argv: list[str], directory: Path, output: Path, env: dict[str, str] | None = None,
                stdin_text: str | None = None, progress: Callable[[str], None] | None = None,
                label: str = "", deadline: float | None = None) -> tuple[int, float]:
    """Run ``argv`` in ``directory`` (stdout and stderr to ``output``); returns (exit status, wall s).

    Raises :class:`Interrupted` when the launcher was asked to stop, after stopping the program.
    ``deadline`` (``time.time()``): the program is stopped there and (-SIGTERM, wall) returned,
    for programs that have no max_seconds of their own.
    """
    directory = Path(directory)
    check_directory(directory)
    pid_path = directory / PID_FILE
    start = time.monotonic()
    with open(output, "w") as out:
        proc = subprocess.Popen(
            argv, cwd=directory, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            env=env, text=True, start_new_session=True, preexec_fn=_parent_death_signal(os.getpid()),
        )
        info = {"host": socket.gethostname(), "launcher_pid": os.getpid(), "program": Path(argv[0]).name,
                "argv": list(argv), "pgid": proc.pid, "pids": [proc.pid],
                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}

        def write_info() -> None:
            tmp = pid_path.with_name(pid_path.name + ".tmp")
            tmp.write_text(json.dumps(info))
            os.replace(tmp, pid_path)

        write_info()
        try:
            if stdin_text is not None:
                proc.stdin.write(stdin_text)
                proc.stdin.close()
            beat = 0
            while True:
                try:
                    proc.wait(timeout=1.0)  # returns as soon as the program exits
                    if proc.returncode != 0 and stop_requested() is not None:
                        # e.g. SLURM signalled the whole job: the program died of the same signal
                        raise Interrupted(stop_requested())
                    break
                except subprocess.TimeoutExpired:
                    pass
                if stop_requested() is not None:
                    raise Interrupted(stop_requested())
                if deadline is not None and time.time() >= deadline:
                    stop_tree([proc.pid, *descendants(proc.pid)], proc.pid)
                    proc.wait()
                    return -signal.SIGTERM, time.monotonic() - start
                beat += 1
                if beat % HEARTBEAT_SECONDS == 0:
                    os.utime(pid_path)
                if beat % 3 == 1:  # mpirun's ranks appear after it starts
                    pids = [proc.pid, *descendants(proc.pid)]
                    if pids != info["pids"]:
                        info["pids"] = pids
                        write_info()
                if progress:
                    progress(f"{label} {time.monotonic() - start:6.1f} s")
        except BaseException:
            stop_tree([proc.pid, *descendants(proc.pid)], proc.pid)
            proc.wait()
            raise
        finally:
            if proc.poll() is not None:
                pid_path.unlink(missing_ok=True)
    return proc.returncode, time.monotonic() - start
