"""The settings flags most commands take, and the settings they make."""

from __future__ import annotations

import argparse
from pathlib import Path

from gladd.settings import Settings, load_settings


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


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings a command runs with, given its flags (see :func:`load_settings`)."""
    names = (
        "policies",
        "database_url",
        "state_dir",
        "admin_host",
        "admin_port",
        "log_level",
        "log_format",
        "log_file",
    )
    flags = {name: getattr(args, name, None) for name in names}
    return load_settings(env_file=args.env_file, **flags)
