"""HPC queue submission with FireWorks' queue adapter (qlaunch conventions), templates in inputs/queue/.

A queue job runs ``tmdflow launch --max-seconds <walltime - margin>``: READY Fireworks one after
another until its time is spent (rapidfire), each program with a max_seconds from the time
left, so the queue never kills a step without a checkpoint.  ``submit_jobs`` submits jobs while
READY work exists -- once (``tmdflow launch --queue``), or, with ``rapidfire``, keeping up to
``njobs`` jobs queued until no READY work and no job of its own is left (``qlaunch rapidfire``).

Submitting needs only to read the store (how many Fireworks are READY, and their names for the
job names): it reads a read-only connection, so it never waits for a job's launcher.  Every
path in a job script is shell-quoted; the script holds no database URI (a job's launcher reads
its own settings: TMDFLOW_DB_URI or ~/.tmdflow.yaml on the compute node).
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from .data import inputs_dir
from .errors import InputError, QueueError, StoreBusy

#: the scheduler states of a job still in the queue (SLURM squeue %T)
_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED"}
_ACTIVE = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
_KNOWN_KEYS = {"q_type", "template", "params", "walltime_margin_seconds", "max_launches_per_job", "tmdflow_command"}


def _seconds(walltime: str) -> int:
    """SLURM/PBS walltime (D-HH:MM:SS, D:HH:MM:SS, HH:MM:SS, MM:SS) in seconds."""
    text = str(walltime).strip()
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise InputError(f"walltime {walltime!r} is not [D-]HH:MM:SS", "write e.g. walltime: \"04:00:00\"") from None
    if len(parts) == 4:  # D:HH:MM:SS
        d, h, m, s = parts
        return (((days + d) * 24 + h) * 60 + m) * 60 + s
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return ((days * 24 + h) * 60 + m) * 60 + s


@dataclass
class QueueConfig:
    """A tmdflow queue YAML: FireWorks' CommonAdapter parameters plus tmdflow's job settings."""

    path: Path
    q_type: str
    template: Path
    params: dict
    walltime_margin_seconds: int = 600
    max_launches_per_job: int = 0  # 0: Fireworks one after another until the walltime
    tmdflow_command: str = "tmdflow"
    extra: dict = field(default_factory=dict)

    @property
    def max_seconds(self) -> int | None:
        """The job launcher's time budget: walltime minus the margin (None without a walltime)."""
        walltime = self.params.get("walltime")
        if not walltime:
            return None
        budget = _seconds(walltime) - self.walltime_margin_seconds
        if budget <= 0:
            raise InputError(f"{self.path}: walltime {walltime} is not longer than walltime_margin_seconds "
                             f"({self.walltime_margin_seconds} s)", "raise the walltime or lower the margin")
        return budget

    def adapter(self):
        from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

        return CommonAdapter(q_type=self.q_type, template_file=str(self.template), **self.params)


def load_queue_config(path: Path | None) -> QueueConfig:
    path = Path(path).expanduser() if path else inputs_dir() / "queue" / "slurm.yaml"
    if not path.is_file():
        raise InputError(f"queue adapter file {path} not found", "use inputs/queue/slurm.yaml or pbs.yaml as a start")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"cannot parse {path}: {exc}", "fix the YAML syntax") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{path}: not a mapping", "see inputs/queue/slurm.yaml")
    for key in ("q_type", "template", "params"):
        if key not in cfg:
            raise InputError(f"{path}: missing '{key}'", "see inputs/queue/slurm.yaml")
    unknown = sorted(set(cfg) - _KNOWN_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)}", f"valid keys: {', '.join(sorted(_KNOWN_KEYS))}")
    if not isinstance(cfg["params"], dict):
        raise InputError(f"{path}: 'params' must be a mapping", "see inputs/queue/slurm.yaml")
    template = Path(str(cfg["template"])).expanduser()
    if not template.is_absolute():
        template = (path.parent / template) if (path.parent / template).is_file() else inputs_dir() / "queue" / template
    if not template.is_file():
        raise InputError(f"{path}: template {cfg['template']} not found", "give a path relative to the YAML or inputs/queue/")
    try:
        margin = int(cfg.get("walltime_margin_seconds", 600))
        per_job = int(cfg.get("max_launches_per_job", 0) or 0)
    except (TypeError, ValueError):
        raise InputError(f"{path}: walltime_margin_seconds and max_launches_per_job must be integers", "fix the YAML") from None
    return QueueConfig(path, str(cfg["q_type"]), template, dict(cfg["params"]), margin, per_job,
                       str(cfg.get("tmdflow_command") or "tmdflow"))


def launch_command(cfg: QueueConfig, max_seconds: float | None = None, max_launches: int | None = None) -> str:
    """What a job runs: ``tmdflow launch --max-seconds N [--max-launches M]``, shell-quoted."""
    argv = [*shlex.split(cfg.tmdflow_command), "launch"]
    seconds = max_seconds or cfg.max_seconds
    if seconds:
        argv += ["--max-seconds", str(int(seconds))]
    per_job = cfg.max_launches_per_job if max_launches is None else max_launches
    if per_job:
        argv += ["--max-launches", str(int(per_job))]
    return shlex.join(argv)


def job_name(prefix: str, next_step: str | None) -> str:
    """``<prefix>-<the step the job will start with>``, e.g. tmdflow-MoS2-monolayer-scf_soc."""
    name = f"{prefix}-{next_step}" if next_step else str(prefix)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)[:64]


def render_script(cfg: QueueConfig, launch_dir: Path, command: str, name: str | None = None) -> str:
    """The job script: FireWorks' $${key} template, every path shell-quoted, unfilled lines dropped."""
    from fireworks.queue.queue_adapter import QScriptTemplate

    subs = {k: v for k, v in cfg.params.items() if v is not None}
    subs["job_name"] = name or job_name(str(subs.get("job_name", "tmdflow")), None)
    subs["launch_dir"] = shlex.quote(str(Path(launch_dir).resolve()))
    subs["rocket_launch"] = command
    text = QScriptTemplate(cfg.template.read_text()).safe_substitute(subs)
    return "\n".join(line for line in text.split("\n") if "$$" not in line)


def job_script(path: Path | None, launch_dir: Path, max_seconds_override: float | None = None,
               max_launches: int | None = None) -> str:
    """The script ``tmdflow launch --queue`` would submit (``--dry-run``)."""
    cfg = load_queue_config(path)
    return render_script(cfg, launch_dir, launch_command(cfg, max_seconds_override, max_launches))


# -- the batch system -------------------------------------------------------------------------

def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise QueueError(f"'{argv[0]}' not found: this machine cannot submit to the queue",
                         "run tmdflow launch --queue on a login node of the cluster (or check PATH)") from None
    except subprocess.TimeoutExpired:
        raise QueueError(f"'{shlex.join(argv)}' did not answer within 120 s", "check the batch system's status") from None


def submit_script(cfg: QueueConfig, script: Path) -> str:
    """Submit with the queue's command (sbatch/qsub, from FireWorks' adapter); returns the job id."""
    adapter = cfg.adapter()
    submit_cmd = adapter.q_commands[cfg.q_type]["submit_cmd"]
    proc = _run([submit_cmd, script.name], cwd=script.parent)
    if proc.returncode != 0:
        raise QueueError(f"{submit_cmd} refused {script}: {(proc.stderr or proc.stdout).strip()[:400]}",
                         f"fix the queue YAML {cfg.path} (partition, account, walltime, nodes)")
    try:
        return str(adapter._parse_jobid(proc.stdout))
    except Exception:
        raise QueueError(f"cannot read a job id from {submit_cmd}'s answer {proc.stdout.strip()[:200]!r}",
                         "check the q_type in the queue YAML") from None


def jobs_in_queue(cfg: QueueConfig, ids: set[str]) -> tuple[set[str], set[str]]:
    """(pending, running) among the jobs ``ids``: jobs still queued or running."""
    if not ids:
        return set(), set()
    if cfg.q_type == "SLURM":
        proc = _run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i %T"])
        if proc.returncode != 0:
            raise QueueError(f"squeue failed: {proc.stderr.strip()[:300]}", "check the SLURM controller (sinfo)")
        pending, running = set(), set()
        for line in proc.stdout.splitlines():
            job, _, state = line.strip().partition(" ")
            if job in ids:
                (pending if state in _QUEUED else running if state in _ACTIVE else set()).add(job)
        return pending, running
    # PBS and the others: FireWorks' count of the user's jobs, all taken as pending
    n = cfg.adapter().get_njobs_in_queue()
    alive = set(sorted(ids)[-n:]) if n else set()
    return alive, set()


# -- submitting -------------------------------------------------------------------------------

@dataclass
class Submission:
    ids: list[str]
    rounds: int


def _ready_work(settings) -> tuple[int, list[str], tuple]:
    """(READY count, their names in run order, a fingerprint of the LaunchPad's progress)."""
    from .store.connection import connect

    lpad = connect(settings, readonly=True).launchpad
    ready = list(lpad.fireworks.find({"state": "READY"}, {"name": 1}, sort=[("spec._priority", -1), ("created_on", 1)]))
    progress = (lpad.launches.count_documents({}), lpad.fireworks.count_documents({"state": "COMPLETED"}),
                lpad.fireworks.count_documents({"state": "FIZZLED"}), len(ready))
    return len(ready), [doc["name"] for doc in ready], progress


def _embedded(settings) -> bool:
    return str(settings.db_uri).startswith("embedded:")


def submit_jobs(settings, path: Path | None, njobs: int, launch_dir: Path, max_seconds: float | None = None,
                max_launches: int | None = None, rapidfire: bool = False, sleep_seconds: float = 60.0,
                say: Callable[[str], None] | None = None) -> Submission:
    """Submit queue jobs for the READY Fireworks: at most ``njobs`` in the queue at once and no more
    pending jobs than READY Fireworks.  ``rapidfire``: go on, every ``sleep_seconds``, until no
    READY work and no job of this submission is left in the queue."""
    say = say or (lambda message: print(message, file=sys.stderr))
    if njobs < 1:
        raise InputError(f"--njobs {njobs}", "give at least 1 job")
    cfg = load_queue_config(path)
    command = launch_command(cfg, max_seconds, max_launches)
    launch_dir = Path(launch_dir).resolve()
    launch_dir.mkdir(parents=True, exist_ok=True)
    prefix = str(cfg.params.get("job_name") or "tmdflow")
    ids: list[str] = []
    ours: set[str] = set()
    rounds, idle_ends, last_progress = 0, 0, None
    while True:
        rounds += 1
        pending, running = jobs_in_queue(cfg, ours)
        ended = ours - pending - running
        try:
            n_ready, names, progress = _ready_work(settings)
        except StoreBusy:  # a store that cannot be read now: try again next round
            n_ready, names, progress = 0, [], last_progress
        if ended:
            # jobs that ended without anything changing in the LaunchPad (e.g. tmdflow missing on the node)
            idle_ends = idle_ends + len(ended) if progress == last_progress else 0
            if idle_ends >= 3:
                raise QueueError(f"{idle_ends} queue jobs ended without running a Firework",
                                 f"read their .out/.error files under {launch_dir} (is tmdflow on PATH in the job, "
                                 "and its settings/store reachable there?)")
            last_progress = progress
        ours = pending | running
        if last_progress is None:
            last_progress = progress
        # a pending job will take a READY Firework; so will a job just started when the store is the
        # embedded file, whose last checkpoint still shows the Firework it took as READY
        busy = len(pending) + (len(running) if _embedded(settings) else 0)
        n_new = max(0, min(njobs - len(ours), n_ready - busy))
        for i in range(n_new):
            now = time.time()  # FireWorks' launcher_<datestamp> convention, unique to the microsecond
            directory = launch_dir / f"launcher_{time.strftime('%Y-%m-%d-%H-%M-%S', time.localtime(now))}-{int(now * 1e6) % 1000000:06d}"
            directory.mkdir(parents=True, exist_ok=False)
            name = job_name(prefix, names[busy + i] if busy + i < len(names) else None)
            script = directory / "tmdflow-job.sh"
            script.write_text(render_script(cfg, directory, command, name))
            job = submit_script(cfg, script)
            ids.append(job)
            ours.add(job)
            pending.add(job)
            say(f"submitted job {job} ({name}) in {directory}")
        if not rapidfire:
            break
        if not ours and n_ready == 0:
            say("no READY Fireworks and no job of this submission left in the queue: done")
            break
        time.sleep(sleep_seconds)
    return Submission(ids, rounds)
