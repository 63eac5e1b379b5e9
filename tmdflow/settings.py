"""One settings object for the machine side of tmdflow.

Values are layered: built-in defaults < ``~/.tmdflow.yaml`` (or the file named by
``TMDFLOW_CONFIG``) < environment variables ``TMDFLOW_<FIELD>`` (upper case).  Nothing here
is read at import time; call :func:`load_settings` where settings are needed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
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
    elk_command: str = field(default="elk-lapw", metadata={"help": "Elk executable (Debian: elk-lapw)"})
    elk_threads: int = field(
        default=1, metadata={"help": "OpenMP threads of every Elk run (1: nempty 64 segfaulted with 2)"}
    )
    elk_species_dir: Path = field(
        default=Path("/usr/share/elk-lapw/species"),
        metadata={"help": "Elk's species files (<El>.in); tmdflow copies them and sets R_mt"},
    )
    db_lock_timeout: float = field(
        default=30.0, metadata={"help": "seconds to wait for the embedded store's lock"}
    )
    db_timeout_seconds: float = field(
        default=5.0, metadata={"help": "seconds to wait for a MongoDB server to answer (server selection), 0 < t <= 600"}
    )

    def __post_init__(self) -> None:
        if isinstance(self.nprocs, bool) or not isinstance(self.nprocs, int) or not 1 <= self.nprocs <= MAX_NPROCS:
            raise InputError(
                f"nprocs must be an integer from 1 to {MAX_NPROCS}, got {self.nprocs!r}",
                "set TMDFLOW_NPROCS (or nprocs: in the config file, or --nprocs) to a positive integer",
            )
        timeout = self.db_lock_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or not 0 < timeout <= MAX_LOCK_TIMEOUT:
            raise InputError(f"db_lock_timeout must be a number of seconds in (0, {MAX_LOCK_TIMEOUT:g}], got {timeout!r}",
                             "set TMDFLOW_DB_LOCK_TIMEOUT (or db_lock_timeout:) to e.g. 30")
        timeout = self.db_timeout_seconds
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or not 0 < timeout <= MAX_DB_TIMEOUT:
            raise InputError(f"db_timeout_seconds must be a number of seconds in (0, {MAX_DB_TIMEOUT:g}], got {timeout!r}",
                             "set TMDFLOW_DB_TIMEOUT_SECONDS (or db_timeout_seconds:) to e.g. 5")

    def check_run_directories(self) -> None:
        """Refuse, before anything runs, a ``work_dir`` (or a generated-pseudopotential cache
        ``pseudo_dir``) that is a file or cannot be written, and a ``user_pseudo_dir`` that is not
        a readable directory.  Nothing is created here."""
        check_writable_dir(self.work_dir, "work_dir")
        if self.user_pseudo_dir is None:
            check_writable_dir(self.pseudo_dir, "pseudo_dir")
        else:
            check_readable_dir(self.user_pseudo_dir, "user_pseudo_dir")


MAX_NPROCS = 65536
MAX_LOCK_TIMEOUT = 86400.0  # s
MAX_DB_TIMEOUT = 600.0  # s, MongoDB server selection
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _coerce(name: str, value: Any, where: str = "") -> Any:
    """``value`` of setting ``name`` as its type; ``where`` says where it came from (for errors)."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    source = where or f"TMDFLOW_{name.upper()}"
    if name not in fields:
        raise InputError(
            f"unknown setting '{name}'" + (f" in {where}" if where else ""),
            f"valid settings are: {', '.join(sorted(fields))}",
        )
    if value is None:
        return None
    if name in ("db_lock_timeout", "db_timeout_seconds"):
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a number of seconds, got {value!r} ({source})",
                             "set it to e.g. " + ("30" if name == "db_lock_timeout" else "5")) from None
        return number
    if name in ("nprocs", "elk_threads"):
        text = str(value).strip()
        if isinstance(value, bool) or not (isinstance(value, int) or text.isdigit()) or \
                (name == "elk_threads" and int(text) < 1):
            raise InputError(f"{name} must be a positive integer, got {value!r} ({source})",
                             "set it to the number of " + ("MPI processes" if name == "nprocs" else "OpenMP threads")
                             + ", e.g. 2") from None
        return int(text)
    if name in ("pseudo_dir", "work_dir", "user_pseudo_dir", "wienroot", "wien2k_scratch", "elk_species_dir"):
        return Path(str(value)).expanduser() if str(value) else None
    if name == "keep_scratch":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise InputError(f"keep_scratch must be a yes/no value, got {value!r} ({source})",
                             f"use one of {', '.join(TRUE_WORDS)} (keep) or {', '.join(FALSE_WORDS)} (delete)")
        return word in TRUE_WORDS
    return str(value)


def _nearest_existing(path: Path) -> Path:
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _setting_hint(key: str) -> str:
    option = {"work_dir": " or --work-dir", "user_pseudo_dir": " or --pseudo-dir"}.get(key, "")
    return f"TMDFLOW_{key.upper()} ({key}: in ~/.tmdflow.yaml{option})"


def check_writable_dir(path: Path, key: str) -> Path:
    """``path`` is a directory that can be written, or can be created inside one; the error names
    the setting ``key`` and what is wrong.  Nothing is created."""
    path = Path(path).expanduser()
    base = _nearest_existing(path)
    if not base.is_dir():
        what = "is a file" if base == path.absolute() else f"lies under {base}, which is a file"
        raise InputError(f"{key} {path} {what}, not a directory",
                         f"point {_setting_hint(key)} at a directory you can write")
    if not os.access(base, os.W_OK | os.X_OK):
        what = "is not writable" if base == path.absolute() else f"cannot be created: {base} is not writable"
        raise InputError(f"{key} {path} {what} (read-only or owned by someone else)",
                         f"point {_setting_hint(key)} at a directory you can write, or fix its permissions")
    return path


def check_readable_dir(path: Path, key: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise InputError(f"{key} {path} " + ("is a file, not a directory" if path.exists() else "does not exist"),
                         f"point {_setting_hint(key)} at the directory holding your UPF files")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"{key} {path} cannot be read", f"fix its permissions or point {_setting_hint(key)} elsewhere")
    return path


def warn_if_secret_exposed(path: Path, db_uri: Any) -> bool:
    """A settings file that holds a database password must be readable by its owner alone: warn
    (stderr, naming the fix) when group or others can read it.  Returns whether it warned."""
    if not isinstance(db_uri, str) or not db_uri:
        return False
    from .store.uri import parse

    try:
        secret = bool(parse(db_uri).secrets())
        mode = path.stat().st_mode & 0o777
    except Exception:  # noqa: BLE001 -- an unparsable URI is refused later, with its own message
        return False
    if not secret or not mode & 0o077:
        return False
    print(f"warning: {path} holds a database password and is readable by others (mode {mode:04o}); "
          f"make it private: chmod 600 {path}", file=sys.stderr)
    return True


def _read_config(path: Path) -> dict[str, Any]:
    """The machine settings of a config file (its ``machine:`` section, or the whole file)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"cannot parse {path}: {exc}", "fix the YAML syntax") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text (UTF-8) YAML file", "point TMDFLOW_CONFIG at your settings file") \
            from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", "fix its permissions or TMDFLOW_CONFIG") from None
    valid = sorted(f.name for f in dataclasses.fields(Settings))
    if not isinstance(data, dict):
        raise InputError(f"{path}: settings are a mapping (machine: {{nprocs: 2, ...}}), got {type(data).__name__}",
                         "see docs/user-guide.md, section 2")
    if "machine" in data:
        extra = sorted(str(k) for k in data if k != "machine")
        if extra:
            raise InputError(f"{path}: unknown section(s) {extra} beside machine:",
                             f"put the settings under machine: (valid settings: {', '.join(valid)})")
        machine = data["machine"] or {}
        if not isinstance(machine, dict):
            raise InputError(f"{path}: machine: is not a mapping of settings", "write machine: {nprocs: 2, ...}")
    else:
        machine = data
    unknown = sorted(str(k) for k in machine if k not in valid)
    if unknown:
        raise InputError(f"{path}: unknown setting(s) {', '.join(unknown)}",
                         f"valid settings are: {', '.join(valid)} (check the spelling)")
    warn_if_secret_exposed(path, machine.get("db_uri"))
    return {key: _coerce(key, val, f"{key}: in {path}") for key, val in machine.items()}


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from file, environment and explicit overrides (highest)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    named = env.get("TMDFLOW_CONFIG") if config_file is None else None
    if named is not None:  # a file the user named must exist (the default one may be absent)
        if not named.strip():
            raise InputError("TMDFLOW_CONFIG is set but empty", "unset it, or set it to your settings file")
        if named != os.devnull and not Path(named).expanduser().is_file():  # os.devnull: no settings file
            raise InputError(f"TMDFLOW_CONFIG={named} " + ("is not a file" if Path(named).expanduser().exists()
                                                            else "names no file"),
                             "set TMDFLOW_CONFIG to an existing settings file, or unset it to use ~/.tmdflow.yaml")
    path = Path(config_file or named or DEFAULT_CONFIG_FILE).expanduser()
    if path.is_file() and named != os.devnull:
        values.update(_read_config(path))
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
