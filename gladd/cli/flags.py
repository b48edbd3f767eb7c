"""The settings flags most commands take, and the settings they make."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gladd.light_settings import LightSettings, resolve

if TYPE_CHECKING:
    from gladd.settings import Settings

NAMES = (
    "policies",
    "database_url",
    "state_dir",
    "admin_host",
    "admin_port",
    "log_level",
    "log_format",
    "log_file",
)


def settings_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--policies", type=Path, metavar="PATH", help="policies file (GLADD_POLICIES)")
    add("--database-url", metavar="URL", help="task store (GLADD_DATABASE_URL)")
    add("--state-dir", type=Path, metavar="DIR", help="state directory (GLADD_STATE_DIR)")
    add("--admin-host", metavar="HOST", help="admin API address (GLADD_ADMIN_HOST)")
    add("--admin-port", type=int, metavar="PORT", help="admin API port (GLADD_ADMIN_PORT)")
    add("--log-level", metavar="LEVEL", help="TRACE..CRITICAL (GLADD_LOG_LEVEL)")
    add("--log-format", choices=["text", "json"], help="log line format (GLADD_LOG_FORMAT)")
    add("--log-file", type=Path, metavar="PATH", help="also log to this file (GLADD_LOG_FILE)")
    add("--env-file", type=Path, metavar="PATH", help="read GLADD_* settings from this file")
    add(
        "--use-last-good",
        action="store_true",
        help="if the policies file is invalid, start from the last accepted copy",
    )


def _flags(args: argparse.Namespace) -> dict[str, object]:
    return {name: getattr(args, name, None) for name in NAMES}


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings a command runs with, given its flags (see :func:`load_settings`)."""
    from gladd.settings import load_settings  # noqa: PLC0415 - pydantic: only when needed

    return load_settings(env_file=args.env_file, **_flags(args))


def light_settings_from(args: argparse.Namespace) -> LightSettings:
    """The same settings' few that the fast commands need, without pydantic when they are
    plain (:mod:`gladd.light_settings`); else from :func:`settings_from`, and its error."""
    light = resolve(_flags(args), args.env_file)
    return light if light is not None else light_of(settings_from(args))


def light_of(full: Settings) -> LightSettings:
    """The fast commands' few of ``full``."""
    token = full.admin_token.get_secret_value() if full.admin_token is not None else None
    return LightSettings(
        policies=full.policies,
        database_url=full.database_url,
        state_dir=full.state_dir,
        admin_host=full.admin_host,
        admin_port=full.admin_port,
        admin_token=token,
        admin_read_only=full.admin_read_only,
        otel=full.otel,
    )
