"""Machine side of Elk: the executable, OpenMP threads, the species directory, how to run."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import ExecutableNotFound
from ...processes import run_program
from ...settings import Settings
from ..records import ProgressFn, RunRecord
from .parsers import parse_version_banner

#: Debian's elk-lapw package installs the binary under this name and the species files here
DEFAULT_EXECUTABLE = "elk-lapw"
DEFAULT_SPECIES_DIR = Path("/usr/share/elk-lapw/species")


@dataclass(frozen=True)
class ElkProfile:
    executable: str = DEFAULT_EXECUTABLE
    omp_threads: int = 1  # OpenMP threads of every run (nempty 64 segfaulted with 2 threads, 1 worked)
    species_dir: Path = DEFAULT_SPECIES_DIR  # Elk's own species files (*.in); tmdflow copies and edits them
    command_prefix: str = ""  # e.g. "srun --ntasks=1 --cpus-per-task=2"

    @classmethod
    def from_settings(cls, settings: Settings) -> "ElkProfile":
        """Settings ``elk_command``, ``elk_threads``, ``elk_species_dir`` (``TMDFLOW_ELK_COMMAND``,
        ``TMDFLOW_ELK_THREADS``, ``TMDFLOW_ELK_SPECIES_DIR`` or ~/.tmdflow.yaml), else the Debian defaults."""
        def pick(name: str, default):
            value = getattr(settings, name, None)
            if value in (None, ""):
                value = os.environ.get(f"TMDFLOW_{name.upper()}") or None
            return default if value in (None, "") else value

        return cls(str(pick("elk_command", DEFAULT_EXECUTABLE)), int(pick("elk_threads", 1)),
                   Path(pick("elk_species_dir", DEFAULT_SPECIES_DIR)),
                   str(getattr(settings, "elk_command_prefix", "") or ""))

    def executable_path(self) -> str | None:
        return shutil.which(self.executable)

    def check(self) -> None:
        """Fail before any work when Elk or its species files are missing."""
        if self.executable_path() is None:
            raise ExecutableNotFound(
                f"Elk executable '{self.executable}' not found",
                "install it (Debian: apt-get install elk-lapw, or scripts/bootstrap.sh) or set "
                "TMDFLOW_ELK_COMMAND / 'elk_command:' in ~/.tmdflow.yaml",
            )
        if not Path(self.species_dir).is_dir():
            raise ExecutableNotFound(
                f"Elk species directory {self.species_dir} does not exist",
                "set TMDFLOW_ELK_SPECIES_DIR / 'elk_species_dir:' to the directory holding Mo.in, S.in, ...",
            )
        if self.omp_threads < 1:
            raise ExecutableNotFound(f"elk_threads = {self.omp_threads} is not a thread count", "use 1 or more")

    def version(self) -> str | None:
        """The installed Elk's version, from its start banner: Elk started in an empty directory
        prints "Elk code version X started" and stops at once for want of elk.in (0.4 s here, loaded).  Run
        without ``command_prefix`` (no batch allocation for a probe).  None when the executable is
        missing or prints no banner.  Probed once per executable and process."""
        path = self.executable_path()
        return _probe_version(path) if path else None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(self.omp_threads)
        env.setdefault("OMP_STACKSIZE", "64M")  # Elk's OpenMP threads keep large arrays on the stack
        return env

    def run(self, directory: Path, log_name: str, progress: ProgressFn | None = None,
            label: str = "elk") -> RunRecord:
        """Run Elk in ``directory`` (it reads ./elk.in), standard output to ``log_name``."""
        self.check()
        argv = [*shlex.split(self.command_prefix), self.executable_path() or self.executable]
        returncode, wall = run_program(argv, directory, directory / log_name, env=self.environment(),
                                       progress=progress, label=label)
        return RunRecord(self.executable, tuple(argv), directory, returncode, wall)


@functools.lru_cache(maxsize=8)
def _probe_version(executable: str) -> str | None:
    with tempfile.TemporaryDirectory(prefix="tmdflow-elk-version-") as empty:
        try:
            proc = subprocess.run([executable], cwd=empty, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
        except (OSError, subprocess.TimeoutExpired):
            return None
    return parse_version_banner(proc.stdout + proc.stderr)
