"""Machine side of WIEN2k: where it is installed, scratch, k-point parallel jobs, how to run."""

from __future__ import annotations

import os
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

from ...errors import ExecutableNotFound
from ...processes import run_program
from ...settings import Settings
from ..records import ProgressFn, RunRecord

#: the WIEN2k scripts and programs tmdflow calls (all live in $WIENROOT)
REQUIRED_PROGRAMS = ("init_lapw", "run_lapw", "save_lapw", "x")


@dataclass(frozen=True)
class Wien2kProfile:
    wienroot: Path | None
    scratch: Path | None = None
    command_prefix: str = ""  # e.g. "srun --ntasks=1": wraps every script call
    parallel_jobs: int = 1  # k-point parallel jobs written to .machines
    hosts: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> "Wien2kProfile":
        root = settings.wienroot or (Path(os.environ["WIENROOT"]) if os.environ.get("WIENROOT") else None)
        scratch = settings.wien2k_scratch or (Path(os.environ["SCRATCH"]) if os.environ.get("SCRATCH") else None)
        return cls(root, scratch, settings.wien2k_command_prefix, settings.nprocs)

    def check(self) -> None:
        """Fail before any work when WIEN2k is not installed where the settings say."""
        if self.wienroot is None:
            raise ExecutableNotFound(
                "WIENROOT is not set: tmdflow cannot find WIEN2k",
                "export WIENROOT=/path/to/WIEN2k (the directory holding run_lapw) or set "
                "TMDFLOW_WIENROOT / 'wienroot:' in ~/.tmdflow.yaml",
            )
        if not Path(self.wienroot).is_dir():
            raise ExecutableNotFound(f"WIENROOT={self.wienroot} is not a directory", "fix WIENROOT")
        missing = [p for p in REQUIRED_PROGRAMS if not os.access(Path(self.wienroot) / p, os.X_OK)]
        if missing:
            raise ExecutableNotFound(
                f"WIEN2k programs missing or not executable in {self.wienroot}: {', '.join(missing)}",
                "check the WIEN2k installation (siteconfig_lapw) and WIENROOT",
            )

    def version(self) -> str:
        f = Path(self.wienroot or ".") / "VERSION"
        return f.read_text().strip().splitlines()[0] if f.is_file() else "WIEN2k (version unknown)"

    def machine_hosts(self) -> list[str]:
        return list(self.hosts) or [socket.gethostname()] * max(1, self.parallel_jobs)

    @property
    def k_parallel(self) -> bool:
        return len(self.machine_hosts()) > 1

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["WIENROOT"] = str(self.wienroot)
        env["PATH"] = f"{self.wienroot}{os.pathsep}{env.get('PATH', '')}"
        if self.scratch:
            env["SCRATCH"] = str(self.scratch)
        env.setdefault("SCRATCH", "./")
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def run(self, args: list[str], directory: Path, log_name: str, stdin_text: str | None = None,
            progress: ProgressFn | None = None, label: str = "") -> RunRecord:
        """Run ``$WIENROOT/<args[0]> args[1:]`` in the case directory, output to ``log_name``."""
        self.check()
        argv = [*shlex.split(self.command_prefix), str(Path(self.wienroot) / args[0]), *args[1:]]
        # own process group, parent-death signal, pid file; stopped when the launcher is interrupted
        returncode, wall = run_program(argv, directory, directory / log_name, env=self.environment(),
                                       stdin_text=stdin_text, progress=progress, label=label)
        return RunRecord(args[0], tuple(argv), directory, returncode, wall)
