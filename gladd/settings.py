"""Settings: *where* things are. Read once at start; a change needs a restart.

Precedence, highest first: command-line flags, ``GLADD_*`` environment variables, the env
file, then the defaults below. Policies — *how* things behave — live in ``policies.toml``
instead and reload live.

The env file is ``--env-file``, else ``GLADD_ENV_FILE`` (empty: none), else the systemd
unit's ``/etc/gladd/gladd.env`` when it exists and this user may read it: so the commands an
operator runs on the service's host (``sudo -u gladd gladd tasks list``) read the settings
the service reads, and find its store.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gladd.errors import SettingsError
from gladd.light_settings import (
    SERVICE_DEFAULTS,
    SERVICE_ENV_FILE,
    configured_policies,
    default_state_dir,
    env_file_in_use,
    is_service_env_file,
    service_defaults_unset,
    shipped_policies,
    store_url_of,
    unreadable_service_env_file,
)

__all__ = [
    "FLAGS",
    "SERVICE_DEFAULTS",
    "SERVICE_ENV_FILE",
    "LogLevel",
    "Settings",
    "default_state_dir",
    "env_file_in_use",
    "load_settings",
    "shipped_policies",
    "unreadable_service_env_file",
]

LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]

# How each setting is spelled on the command line, for messages; env is GLADD_<NAME>.
FLAGS = {
    "policies": "--policies",
    "database_url": "--database-url",
    "state_dir": "--state-dir",
    "admin_host": "--admin-host",
    "admin_port": "--admin-port",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "log_file": "--log-file",
}


class Settings(BaseSettings):
    """Where gladd finds and puts things."""

    model_config = SettingsConfigDict(
        env_prefix="GLADD_", extra="ignore", frozen=True, validate_default=True
    )

    policies: Path | None = None
    database_url: str | None = None
    state_dir: Path = Field(default_factory=default_state_dir)
    plugin_paths: Annotated[tuple[Path, ...], NoDecode] = ()
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(8000, ge=0, le=65535)
    admin_token: SecretStr | None = None
    admin_read_only: bool = False
    """Refuse every operator action on the admin address (cancel, retry, pause, breaker
    isolate/reset, schedule run, reload) and hide them in the console; enqueue and wait
    stay allowed."""
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_file: Path | None = None
    log_rotation: str = "10 MB"
    log_retention: int = Field(5, ge=0)
    node_name: str = Field(default_factory=socket.gethostname)
    otel: bool = False
    """Traces through OpenTelemetry (the ``gladd[otel]`` extra; ``OTEL_*`` configure it)."""
    otel_store_spans: bool = False
    """With ``otel``: a span for each store operation too."""

    @field_validator("plugin_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        # Operators write PATH-style lists (a:b), not JSON.
        if isinstance(value, str):
            return tuple(Path(p) for p in value.split(os.pathsep) if p)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def policies_path(self) -> Path:
        """The policies file: as configured, else ``./policies.toml``, else the shipped one."""
        return configured_policies(self.policies)

    @property
    def store_url(self) -> str:
        """The database URL; by default a SQLite file in the state directory."""
        return store_url_of(self.database_url, self.state_dir)

    def admin_bind_problem(self) -> str | None:
        """Why the admin address may not be bound, or None when it may."""
        if self.admin_token is not None or _is_loopback(self.admin_host):
            return None
        return (
            f"refusing to serve the admin API on {self.admin_host}, which is not a loopback "
            "address, without a token: set GLADD_ADMIN_TOKEN, or bind 127.0.0.1"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(env_file: Path | None = None, **flags: Any) -> Settings:
    """Settings from flags (``None`` means not given), environment and env file."""
    env_file = env_file_in_use(env_file)
    if env_file is not None:
        _require_readable(env_file)
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        settings = Settings(_env_file=env_file, **given)
    except ValidationError as exc:
        raise SettingsError(_render(exc, env_file)) from None
    if env_file is not None and is_service_env_file(env_file):
        return _with_service_defaults(settings, os.environ)
    return settings


def _with_service_defaults(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """``settings`` with the unit's own values for what neither flag, variable nor env file
    set (see :func:`~gladd.light_settings.service_defaults_unset`)."""
    unset = service_defaults_unset(settings.model_fields_set, environ)
    return settings.model_copy(update=unset) if unset else settings


def _require_readable(env_file: Path) -> None:
    if not env_file.is_file():
        raise SettingsError(
            f"{env_file}: env file not found (given by --env-file or GLADD_ENV_FILE)"
        )
    if not os.access(env_file, os.R_OK):
        raise SettingsError(
            f"{env_file}: env file not readable by this user: run as its owner or group "
            "(the service's is root:gladd, mode 0640: sudo -u gladd gladd ...), or pass "
            "another with --env-file"
        )


def _render(exc: ValidationError, env_file: Path | None) -> str:
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        sources = [f"GLADD_{name.upper()}"]
        if name in FLAGS:
            sources.insert(0, FLAGS[name])
        if env_file is not None:
            sources.append(f"{env_file}")
        got = err.get("input")
        shown = "***" if name == "admin_token" else repr(got)
        lines.append(f"setting {name} ({' / '.join(sources)}): {err['msg']} (got {shown})")
    return "\n".join(lines)
