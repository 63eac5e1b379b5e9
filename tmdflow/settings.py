"""One settings object for the machine side of tmdflow.

Values are layered: built-in defaults < ``~/.tmdflow.yaml`` (or the file named by
``TMDFLOW_CONFIG``) < environment variables ``TMDFLOW_<FIELD>`` (upper case).  Nothing here
is read at import time; call :func:`load_settings` where settings are needed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import InputError

DEFAULT_CONFIG_FILE = Path("~/.tmdflow.yaml")


@dataclass(frozen=True)
class Settings:
    """Machine-specific configuration (never physics parameters: those are presets)."""

    pw_command: str = field(default="pw.x", metadata={"help": "pw.x executable (name or path)"})
    bands_command: str = field(default="bands.x", metadata={"help": "bands.x executable"})
    projwfc_command: str = field(default="projwfc.x", metadata={"help": "projwfc.x executable"})
    ld1_command: str = field(default="ld1.x", metadata={"help": "ld1.x executable"})
    mpi_command: str = field(
        default="mpirun",
        metadata={"help": "MPI launcher for pw.x ('' to run serially); e.g. mpirun, srun"},
    )
    nprocs: int = field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        metadata={"help": "MPI processes for pw.x"},
    )
    pseudo_dir: Path = field(
        default=Path("~/.cache/tmdflow/pseudos"),
        metadata={"help": "cache of generated pseudopotentials"},
    )
    user_pseudo_dir: Path | None = field(
        default=None,
        metadata={"help": "directory of user-supplied UPF files (e.g. PseudoDojo FR); overrides generation"},
    )
    work_dir: Path = field(default=Path("tmdflow-runs"), metadata={"help": "where calculations run"})
    keep_scratch: bool = field(
        default=False, metadata={"help": "keep pw.x wavefunction scratch after a run"}
    )
    db_uri: str = field(
        default="embedded:~/.local/share/tmdflow/store.json",
        metadata={"help": "mongodb://user:pass@host/… for a MongoDB server, or embedded:<file>"},
    )
    db_name: str = field(default="tmdflow", metadata={"help": "database holding LaunchPad + results"})
    wienroot: Path | None = field(
        default=None, metadata={"help": "WIEN2k installation (default: $WIENROOT)"}
    )
    wien2k_scratch: Path | None = field(
        default=None, metadata={"help": "WIEN2k SCRATCH directory (default: $SCRATCH, else the case directory)"}
    )
    wien2k_command_prefix: str = field(
        default="", metadata={"help": "prefix for every WIEN2k script call, e.g. 'srun --ntasks=1'"}
    )
    db_lock_timeout: float = field(
        default=30.0, metadata={"help": "seconds to wait for the embedded store's lock"}
    )

    def __post_init__(self) -> None:
        if self.nprocs < 1:
            raise InputError(
                f"nprocs must be >= 1, got {self.nprocs}",
                "set TMDFLOW_NPROCS to a positive integer",
            )


def _coerce(name: str, value: Any) -> Any:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if name not in fields:
        raise InputError(
            f"unknown setting '{name}'",
            f"valid settings are: {', '.join(sorted(fields))}",
        )
    if value is None:
        return None
    if name == "db_lock_timeout":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"db_lock_timeout must be a number, got {value!r}", "fix TMDFLOW_DB_LOCK_TIMEOUT") from None
    if name == "nprocs":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InputError(f"nprocs must be an integer, got {value!r}", "fix TMDFLOW_NPROCS") from None
    if name in ("pseudo_dir", "work_dir", "user_pseudo_dir", "wienroot", "wien2k_scratch"):
        return Path(str(value)).expanduser() if str(value) else None
    if name == "keep_scratch":
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    return str(value)


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from file, environment and explicit overrides (highest)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = Path(config_file or env.get("TMDFLOW_CONFIG") or DEFAULT_CONFIG_FILE).expanduser()
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"cannot parse {path}: {exc}", "fix the YAML syntax") from None
        machine = data.get("machine", data) if isinstance(data, dict) else {}
        for key, val in (machine or {}).items():
            if key in {f.name for f in dataclasses.fields(Settings)}:
                values[key] = _coerce(key, val)
    for f in dataclasses.fields(Settings):
        env_key = f"TMDFLOW_{f.name.upper()}"
        if env_key in env:
            values[f.name] = _coerce(f.name, env[env_key])
    for key, val in overrides.items():
        if val is not None:
            values[key] = _coerce(key, val)
    settings = Settings(**values)
    return dataclasses.replace(
        settings,
        pseudo_dir=Path(settings.pseudo_dir).expanduser(),
        work_dir=Path(settings.work_dir).expanduser(),
    )
