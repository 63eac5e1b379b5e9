"""HPC queue submission through FireWorks' queue launcher with templates from inputs/queue/."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from .data import inputs_dir
from .errors import InputError


def _seconds(walltime: str) -> int:
    parts = [int(p) for p in str(walltime).split(":")]
    if len(parts) == 4:  # D:HH:MM:SS
        d, h, m, s = parts
        return ((d * 24 + h) * 60 + m) * 60 + s
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return (h * 60 + m) * 60 + s


def load_qadapter(path: Path | None, launch_command: str):
    """A FireWorks CommonAdapter from a tmdflow queue YAML; returns (adapter, max_seconds)."""
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    path = Path(path) if path else inputs_dir() / "queue" / "slurm.yaml"
    if not path.is_file():
        raise InputError(f"queue adapter file {path} not found", "use inputs/queue/slurm.yaml or pbs.yaml as a start")
    cfg = yaml.safe_load(path.read_text()) or {}
    for key in ("q_type", "template", "params"):
        if key not in cfg:
            raise InputError(f"{path}: missing '{key}'", "see inputs/queue/slurm.yaml")
    template = Path(cfg["template"])
    if not template.is_absolute():
        template = (path.parent / template) if (path.parent / template).is_file() else inputs_dir() / "queue" / template
    params = dict(cfg["params"])
    params["rocket_launch"] = launch_command
    adapter = CommonAdapter(q_type=cfg["q_type"], template_file=str(template), **params)
    walltime = params.get("walltime")
    max_seconds = _seconds(walltime) - int(cfg.get("walltime_margin_seconds", 600)) if walltime else None
    if max_seconds is not None and max_seconds <= 0:
        raise InputError(f"walltime {walltime} is shorter than the margin", "raise walltime or lower the margin")
    return adapter, max_seconds


def job_script(path: Path | None, launch_dir: Path, max_seconds_override: float | None = None) -> str:
    adapter, max_seconds = load_qadapter(path, "")
    command = "tmdflow launch --max-launches 1"
    if max_seconds_override or max_seconds:
        command += f" --max-seconds {int(max_seconds_override or max_seconds)}"
    adapter["rocket_launch"] = command
    return adapter.get_script_str(str(launch_dir))


def submit_to_queue(conn, settings, path: Path | None, n_jobs: int, launch_dir: Path) -> list[str]:
    """Submit ``n_jobs`` queue jobs (each runs one Firework); returns the queue's job ids."""
    from fireworks.queue.queue_launcher import launch_rocket_to_queue

    from .fireworks import worker

    adapter, max_seconds = load_qadapter(path, "")
    adapter["rocket_launch"] = "tmdflow launch --max-launches 1" + (f" --max-seconds {max_seconds}" if max_seconds else "")
    ids = []
    for _ in range(n_jobs):
        if not conn.launchpad.run_exists(worker(settings)):
            break
        job = launch_rocket_to_queue(conn.launchpad, worker(settings, max_seconds), adapter, str(launch_dir),
                                     reserve=False, strm_lvl="ERROR", create_launcher_dir=True)
        if job is False or job is None:
            raise InputError("the queue rejected the job", f"check {shlex.quote(str(launch_dir))} and the queue YAML")
        ids.append(str(job))
    return ids
