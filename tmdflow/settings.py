"""One settings object for the machine side of tmdflow.

:class:`Settings` is a pydantic-settings ``BaseSettings``: every setting's type, allowed range
and meaning is declared once, on its field.  Values are layered, lowest first: the field defaults
< the settings file ``~/.tmdflow.yaml`` (or the file named by ``TMDFLOW_CONFIG``; its
``machine:`` section or the whole file) < environment variables ``TMDFLOW_<FIELD>`` (upper case)
< explicit values (command-line options).  The file and the environment are the two settings
sources below (:class:`SettingsFile`, :class:`Environment`); :func:`load_settings` layers them
over a given environment and names, in an :class:`~tmdflow.errors.InputError`, the variable or
the file and key a bad value came from.  Nothing here is read at import time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Mapping

import yaml
from pydantic import BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import InputError

DEFAULT_CONFIG_FILE = Path("~/.tmdflow.yaml")
ENV_PREFIX = "TMDFLOW_"
MAX_NPROCS = 65536
MAX_LOCK_TIMEOUT = 86400.0  # s
MAX_DB_TIMEOUT = 600.0  # s, MongoDB server selection


def _not_a_bool(value: Any) -> Any:
    """YAML's ``true``/``yes`` is not a count or a number of seconds (pydantic would read 1)."""
    if isinstance(value, bool):
        raise ValueError("a yes/no value is not a number")
    return value


def _expanded(value: Any) -> Any:
    """``~`` expanded in a path setting; an empty value is no path (None)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return Path(str(value)).expanduser()


Count = Annotated[int, BeforeValidator(_not_a_bool)]
Seconds = Annotated[float, BeforeValidator(_not_a_bool)]
ExpandedPath = Annotated[Path, BeforeValidator(_expanded)]
OptionalPath = Annotated[Path | None, BeforeValidator(_expanded)]


def _setting(default: Any = None, *, factory: Any = None, help: str, expects: str | None = None,
             example: str | None = None, unit: str = "", **bounds: Any) -> Any:
    """A field of :class:`Settings`: its default, meaning (``help``), bounds and, for errors, what
    it expects in words (``expects``) and an example value."""
    extra = {k: v for k, v in (("expects", expects), ("example", example), ("unit", unit)) if v}
    if factory is not None:
        return Field(default_factory=factory, description=help, json_schema_extra=extra, **bounds)
    return Field(default, description=help, json_schema_extra=extra, **bounds)


def _all_cores() -> int:
    return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Machine-specific configuration (never physics parameters: those are presets)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True,
                                      coerce_numbers_to_str=True, allow_inf_nan=False)

    pw_command: str = _setting("pw.x", help="pw.x executable (name or path)")
    bands_command: str = _setting("bands.x", help="bands.x executable")
    projwfc_command: str = _setting("projwfc.x", help="projwfc.x executable")
    pw2wannier90_command: str = _setting("pw2wannier90.x", help="pw2wannier90.x executable (Fig. 3's Wannier map)")
    wannier90_command: str = _setting("wannier90.x", help="wannier90.x executable (Debian package wannier90)")
    ld1_command: str = _setting("ld1.x", help="ld1.x executable")
    mpi_command: str = _setting("mpirun", help="MPI launcher for pw.x ('' to run serially); e.g. mpirun, srun")
    nprocs: Count = _setting(factory=_all_cores, ge=1, le=MAX_NPROCS, expects="a positive integer", example="2",
                             help="MPI processes for pw.x (default: all cores)")
    pseudo_dir: ExpandedPath = _setting(Path("~/.cache/tmdflow/pseudos"), expects="a directory path",
                                        example="~/.cache/tmdflow/pseudos", help="cache of generated pseudopotentials")
    user_pseudo_dir: OptionalPath = _setting(
        None, help="directory of user-supplied UPF files (e.g. PseudoDojo FR); overrides generation")
    work_dir: ExpandedPath = _setting(Path("tmdflow-runs"), expects="a directory path", example="tmdflow-runs",
                                      help="where calculations run")
    keep_scratch: bool = _setting(False, expects="a yes/no value", example="false",
                                  help="keep pw.x wavefunction scratch after a run")
    db_uri: str = _setting("embedded:~/.local/share/tmdflow/store.json",
                           help="mongodb://user:pass@host/… for a MongoDB server, or embedded:<file>")
    db_name: str = _setting("tmdflow", help="database holding LaunchPad + results")
    wienroot: OptionalPath = _setting(None, help="WIEN2k installation (default: $WIENROOT)")
    wien2k_scratch: OptionalPath = _setting(
        None, help="WIEN2k SCRATCH directory (default: $SCRATCH, else the case directory)")
    wien2k_command_prefix: str = _setting("", help="prefix for every WIEN2k script call, e.g. 'srun --ntasks=1'")
    elk_command: str = _setting("elk-lapw", help="Elk executable (Debian: elk-lapw)")
    elk_threads: Count = _setting(1, ge=1, expects="a positive integer", example="2",
                                  help="OpenMP threads of every Elk run (1: nempty 64 segfaulted with 2)")
    elk_species_dir: ExpandedPath = _setting(
        Path("/usr/share/elk-lapw/species"), expects="a directory path", example="/usr/share/elk-lapw/species",
        help="Elk's species files (<El>.in); tmdflow copies them and sets R_mt")
    db_lock_timeout: Seconds = _setting(30.0, gt=0.0, le=MAX_LOCK_TIMEOUT, unit="seconds", example="30",
                                        expects="a number of seconds",
                                        help="seconds to wait for the embedded store's lock")
    db_timeout_seconds: Seconds = _setting(5.0, gt=0.0, le=MAX_DB_TIMEOUT, unit="seconds", example="5",
                                           expects="a number of seconds",
                                           help="seconds to wait for a MongoDB server to answer (server selection)")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Settings()``: explicit values < ``TMDFLOW_*`` of this process < the settings file."""
        return (init_settings, Environment(settings_cls, os.environ),
                SettingsFile(settings_cls, config_file_path(os.environ)))

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes``, validated like any other value (an :class:`InputError` if bad)."""
        values = {**self.model_dump(), **changes}
        try:
            return type(self).model_validate(values)
        except ValidationError as exc:
            raise settings_error(exc, {key: "given" for key in changes}, changes) from None

    def check_run_directories(self) -> None:
        """Refuse, before anything runs, a ``work_dir`` (or a generated-pseudopotential cache
        ``pseudo_dir``) that is a file or cannot be written, and a ``user_pseudo_dir`` that is not
        a readable directory.  Nothing is created here."""
        check_writable_dir(self.work_dir, "work_dir")
        if self.user_pseudo_dir is None:
            check_writable_dir(self.pseudo_dir, "pseudo_dir")
        else:
            check_readable_dir(self.user_pseudo_dir, "user_pseudo_dir")


SETTING_NAMES = tuple(Settings.model_fields)


# -- the two settings sources --------------------------------------------------------------------

class Environment(PydanticBaseSettingsSource):
    """``TMDFLOW_<FIELD>`` (the prefix is ``Settings.model_config["env_prefix"]``, names upper case)
    of an environment mapping; other ``TMDFLOW_*`` variables are not settings and are ignored."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        prefix = self.config.get("env_prefix", "")
        self.values = {name: env[prefix + name.upper()] for name in settings_cls.model_fields
                       if prefix + name.upper() in env}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


class SettingsFile(PydanticBaseSettingsSource):
    """The settings of a YAML file (its ``machine:`` section, or the whole file); ``path`` None: no
    file.  Unknown keys and sections are refused here, naming the file and the valid settings, and
    a file holding a database password that others can read is warned about."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.values = _read_config(path, tuple(settings_cls.model_fields)) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if v is not None}


def config_file_path(env: Mapping[str, str], config_file: Path | None = None) -> Path | None:
    """The settings file to read: ``config_file``, else ``TMDFLOW_CONFIG`` (which must name a file;
    ``os.devnull``: none), else ``~/.tmdflow.yaml`` if it exists.  None: no settings file."""
    if config_file is not None:
        path = Path(config_file).expanduser()
        return path if path.is_file() else None
    named = env.get(ENV_PREFIX + "CONFIG")
    if named is None:
        path = DEFAULT_CONFIG_FILE.expanduser()
        return path if path.is_file() else None
    if not named.strip():
        raise InputError("TMDFLOW_CONFIG is set but empty", "unset it, or set it to your settings file")
    if named == os.devnull:
        return None
    path = Path(named).expanduser()
    if not path.is_file():
        raise InputError(f"TMDFLOW_CONFIG={named} " + ("is not a file" if path.exists() else "names no file"),
                         "set TMDFLOW_CONFIG to an existing settings file, or unset it to use ~/.tmdflow.yaml")
    return path


def _read_config(path: Path, valid_names: tuple[str, ...]) -> dict[str, Any]:
    """The machine settings of a config file (its ``machine:`` section, or the whole file), as
    written (validated by :class:`Settings`)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"cannot parse {path}: {exc}", "fix the YAML syntax") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text (UTF-8) YAML file", "point TMDFLOW_CONFIG at your settings file") \
            from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", "fix its permissions or TMDFLOW_CONFIG") from None
    valid = sorted(valid_names)
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
    return dict(machine)


# -- errors: the setting, the value, where it came from, what is allowed -----------------------------

def allowed(name: str) -> str:
    """Setting ``name``'s allowed values in words, from its declared bounds ('' if unbounded)."""
    info = Settings.model_fields[name]
    extra = info.json_schema_extra or {}
    lo = next((("ge", m.ge) for m in info.metadata if getattr(m, "ge", None) is not None), None) or \
        next((("gt", m.gt) for m in info.metadata if getattr(m, "gt", None) is not None), None)
    hi = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
    if lo is None and hi is None:
        return ""
    if info.annotation is int:
        if hi is None:
            return "a positive integer" if lo == ("ge", 1) else f"an integer >= {lo[1]}"
        return f"an integer from {lo[1]} to {hi}"
    left = "[" if lo and lo[0] == "ge" else "("
    unit = extra.get("unit", "")
    return f"a number{' of ' + unit if unit else ''} in {left}{lo[1]:g}, {hi:g}]"


def _origin_text(name: str, origin: str) -> str:
    """Where a value of ``name`` came from: the variable, the file and key, or 'given' (by the
    caller: a command-line option or an argument of load_settings)."""
    if origin == "env":
        return ENV_PREFIX + name.upper()
    if origin.startswith("file:"):
        return f"{name}: in {origin[5:]}"
    return "given"


def _fix_target(name: str, origin: str) -> str:
    """What to change: the variable, the file's key, or (a given value) every way to set it."""
    if origin == "env" or origin.startswith("file:"):
        return _origin_text(name, origin)
    return f"{name} (its command-line option, {ENV_PREFIX}{name.upper()} or {name}: in {DEFAULT_CONFIG_FILE})"


def settings_error(exc: ValidationError, origins: Mapping[str, str],
                   values: Mapping[str, Any] | None = None) -> InputError:
    """pydantic's errors as one :class:`InputError`: each setting, its value, the allowed values and
    (``origins``: name -> 'env' | 'file:<path>' | anything else for an explicit value) where it
    came from, with the fix; ``values``: the values as given (pydantic reports some after a
    before-validator)."""
    problems, fixes = [], []
    for err in exc.errors():
        loc = err.get("loc") or ()
        name = str(loc[0]) if loc else ""
        if err.get("type") == "extra_forbidden":
            problems.append(f"unknown setting '{name}'")
            fixes.append(f"valid settings are: {', '.join(sorted(SETTING_NAMES))}")
            continue
        if name not in Settings.model_fields:
            problems.append(err["msg"])
            continue
        extra = Settings.model_fields[name].json_schema_extra or {}
        origin = origins.get(name, "")
        rng = allowed(name)
        in_range = err.get("type") in ("greater_than", "greater_than_equal", "less_than_equal", "less_than",
                                       "finite_number")
        expects = rng if (in_range and rng) else extra.get("expects") or err["msg"].lower()
        given = values.get(name, err.get("input")) if values is not None else err.get("input")
        problems.append(f"{name} must be {expects}, got {given!r} ({_origin_text(name, origin)})")
        example = f", e.g. {extra['example']}" if extra.get("example") else ""
        values = " (true/yes/on/1 or false/no/off/0)" if Settings.model_fields[name].annotation is bool else ""
        fixes.append(f"set {_fix_target(name, origin)} to {rng or extra.get('expects') or 'a valid value'}{values}"
                     f"{example}")
    return InputError("; ".join(problems), "; ".join(dict.fromkeys(fixes)))


# -- directories and the settings file's permissions ---------------------------------------------

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


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """:class:`Settings` from the settings file < ``env``'s ``TMDFLOW_*`` (default: this process's
    environment) < ``overrides`` (None values are skipped), validated; a bad value raises an
    :class:`InputError` naming the variable, or the file and key, it came from."""
    env = os.environ if env is None else env
    path = config_file_path(env, config_file)
    layers = (("file:" + str(path), SettingsFile(Settings, path)()), ("env", Environment(Settings, env)()),
              ("given", {k: v for k, v in overrides.items() if v is not None}))
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, layer in layers:
        values.update(layer)
        origins.update(dict.fromkeys(layer, origin))
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise settings_error(exc, origins, values) from None
