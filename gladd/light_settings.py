"""The few settings the fast commands need, resolved without pydantic.

``gladd --version``, ``gladd status`` and ``gladd tasks enqueue`` run in a fraction of the
time importing pydantic-settings takes (issue 15), so they resolve the admin address and
token, the store and the policies file here, exactly as :func:`gladd.settings.load_settings`
does: flags > ``GLADD_*`` variables (any case) > the env file (read with the same
``dotenv_values`` pydantic-settings uses) > the defaults, the service's defaults when the
env file is the service's. What this module cannot read as simply as pydantic would — a
value that would fail validation, or is odd (an empty path, a name set in two cases) —
makes :func:`resolve` answer ``None``: the caller then loads the full settings, whose
message for the problem is the one every command gives. ``tests/unit/test_light_settings.py``
compares the two over combinations of flags, variables and env files.

:mod:`gladd.settings` takes the env file rules and the service's defaults from here.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SERVICE_ENV_FILE = Path("/etc/gladd/gladd.env")
"""The unit's ``EnvironmentFile=`` (systemd/gladd.service): read by default when present."""
SERVICE_DEFAULTS: dict[str, Path] = {
    "policies": Path("/etc/gladd/policies.toml"),  # the unit's Environment=GLADD_POLICIES
    "state_dir": Path("/var/lib/gladd"),  # the unit's StateDirectory=gladd
}
"""What the unit sets outside its env file: the defaults wherever the service's env file is
read, so a command run beside the service sees the service's files, not its user's."""

STORE_HEADER = "Gladd-Store-SHA256"
SOURCE_HEADER = "Gladd-Source"
"""Sent as ``cli`` by ``gladd tasks enqueue`` through the daemon: the task's timeline then
says the CLI created it, not some HTTP client."""
"""The header of a ``POST /tasks`` naming the store it is meant for, by :func:`store_digest`
(see :mod:`gladd.admin.tasks`)."""
PREFIX = "gladd_"
LOG_LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"})
_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})
_PORT = re.compile(r"[0-9]{1,5}")


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$STATE_DIRECTORY`` under systemd, else the XDG state directory."""
    env = os.environ if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        # systemd may pass several, colon-separated; the first is ours (systemd.exec(5)).
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    xdg = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "gladd"


def shipped_policies() -> Path:
    """The default ``policies.toml`` that ships with gladd (wheel or source checkout)."""
    packaged = Path(__file__).parent / "default-policies.toml"
    return packaged if packaged.exists() else Path(__file__).parent.parent / "policies.toml"


def configured_policies(policies: Path | None) -> Path:
    """The policies file: as configured, else ``./policies.toml``, else the shipped one."""
    if policies is not None:
        return policies
    local = Path("policies.toml")
    return local if local.is_file() else shipped_policies()


def store_url_of(database_url: str | None, state_dir: Path) -> str:
    """The database URL; by default a SQLite file in the state directory."""
    return database_url or f"sqlite:///{state_dir / 'gladd.db'}"


def store_digest(store_url: str) -> str:
    """What :data:`STORE_HEADER` carries for ``store_url``: the store named, not its
    password. A relative SQLite path counts from the current directory (where the store
    opens it), so the same text run in two directories names two stores."""
    sqlite = "sqlite:///"
    if store_url.startswith(sqlite) and not store_url[len(sqlite) :].startswith("/"):
        store_url = sqlite + os.path.abspath(store_url[len(sqlite) :])
    return hashlib.sha256(store_url.encode()).hexdigest()


def env_file_in_use(
    given: Path | None = None,
    environ: Mapping[str, str] | None = None,
    service: Path | None = None,
) -> Path | None:
    """The env file settings come from: ``given`` (``--env-file``), else ``GLADD_ENV_FILE``
    (set but empty: none), else the service's when it exists and is readable, else none."""
    if given is not None:
        return given
    env = os.environ if environ is None else environ
    if "GLADD_ENV_FILE" in env:
        return Path(env["GLADD_ENV_FILE"]) if env["GLADD_ENV_FILE"] else None
    service = service or SERVICE_ENV_FILE
    return service if service.is_file() and os.access(service, os.R_OK) else None


def unreadable_service_env_file(service: Path | None = None) -> Path | None:
    """The service's env file when it exists but this user may not read it (so it was
    skipped): worth naming when a store is not found."""
    service = service or SERVICE_ENV_FILE
    return service if service.is_file() and not os.access(service, os.R_OK) else None


def is_service_env_file(path: Path) -> bool:
    """Whether ``path`` is the service's env file (whose defaults then apply)."""
    try:
        return path.samefile(SERVICE_ENV_FILE)
    except OSError:
        return False


def service_defaults_unset(set_names: set[str], environ: Mapping[str, str]) -> dict[str, Path]:
    """The unit's own values for what neither flag, variable nor env file set. Under systemd
    itself ``$STATE_DIRECTORY`` names the state directory (a drop-in may move it), so it
    wins."""
    return {
        name: value
        for name, value in SERVICE_DEFAULTS.items()
        if name not in set_names and not (name == "state_dir" and environ.get("STATE_DIRECTORY"))
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class LightSettings:
    """What ``status`` and ``tasks enqueue`` need of :class:`gladd.settings.Settings`."""

    policies: Path | None
    database_url: str | None
    state_dir: Path
    admin_host: str
    admin_port: int
    admin_token: str | None
    admin_read_only: bool
    otel: bool

    @property
    def store_url(self) -> str:
        return store_url_of(self.database_url, self.state_dir)

    @property
    def policies_path(self) -> Path:
        return configured_policies(self.policies)


class _Odd(Exception):
    """A value this module leaves to pydantic."""


def resolve(
    flags: Mapping[str, object],
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LightSettings | None:
    """The settings ``load_settings(env_file, **flags)`` would give, or ``None`` when this
    cannot tell as simply (the caller then loads those, and their error if any)."""
    env = os.environ if environ is None else environ
    try:
        return _resolve(flags, env_file_in_use(env_file, env), env)
    except _Odd:
        return None


def _resolve(
    flags: Mapping[str, object], env_file: Path | None, environ: Mapping[str, str]
) -> LightSettings:
    raw = _from_file(env_file) if env_file is not None else {}
    raw.update(_prefixed(environ))  # variables win over the env file
    # Each field's value is the one of the highest source: only that one is validated.
    given = {name: _flag(name, value) for name, value in flags.items() if value is not None}
    values = {name: _field(name, text) for name, text in raw.items() if name not in given}
    values.update(given)
    set_names = set(values)
    if env_file is not None and is_service_env_file(env_file):
        values.update(service_defaults_unset(set_names, environ))
    state_dir = values.get("state_dir")
    token = values.get("admin_token")
    return LightSettings(
        policies=_path_or_none(values.get("policies")),
        database_url=_str_or_none(values.get("database_url")),
        state_dir=state_dir if isinstance(state_dir, Path) else default_state_dir(environ),
        admin_host=str(values.get("admin_host", "127.0.0.1")),
        admin_port=int(str(values.get("admin_port", 8000))),
        admin_token=None if token in (None, "") else str(token),
        admin_read_only=values.get("admin_read_only") is True,
        otel=values.get("otel") is True,
    )


def _from_file(env_file: Path) -> dict[str, str]:
    if not (env_file.is_file() and os.access(env_file, os.R_OK)):
        raise _Odd  # load_settings says which and why
    from dotenv import dotenv_values  # noqa: PLC0415 - only when an env file is in use

    values = dotenv_values(env_file)
    if any(value is None for value in values.values()):
        raise _Odd  # a name without `=`
    return _prefixed({k: v for k, v in values.items() if v is not None})


def _prefixed(source: Mapping[str, str]) -> dict[str, str]:
    """The ``GLADD_*`` entries by field name; names match in any case, as pydantic's do."""
    found: dict[str, str] = {}
    for key, value in source.items():
        lowered = key.lower()
        if not lowered.startswith(PREFIX):
            continue
        name = lowered[len(PREFIX) :]
        if name in found:
            raise _Odd  # the same name in two cases: which wins is pydantic's business
        found[name] = value
    return found


def _field(name: str, text: str) -> object:
    """``text`` as the named field's value; raises _Odd for what pydantic might refuse."""
    if name in ("policies", "state_dir", "log_file"):
        if not text:
            raise _Odd
        return Path(text)
    if name == "admin_port":
        return _port(text)
    if name == "log_level":
        if text.upper() not in LOG_LEVELS:
            raise _Odd
        return text
    if name == "log_format":
        if text not in ("text", "json"):
            raise _Odd
        return text
    if name == "log_retention":
        if not text.isascii() or not text.isdigit():
            raise _Odd
        return text
    if name in ("otel", "otel_store_spans", "admin_read_only"):
        lowered = text.lower()
        if lowered not in _TRUE | _FALSE:
            raise _Odd
        return lowered in _TRUE
    return text  # strings: database_url, admin_host, admin_token, node_name, ...


def _flag(name: str, value: object) -> object:
    if name == "admin_port":
        if not isinstance(value, int) or not 0 <= value <= 65535:
            raise _Odd
        return value
    if name == "log_level":
        if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
            raise _Odd
        return value
    if isinstance(value, Path) and not str(value):
        raise _Odd
    return value


def _port(text: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise _Odd
    return int(text)


def _path_or_none(value: object) -> Path | None:
    return value if isinstance(value, Path) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
