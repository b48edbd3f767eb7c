"""The ``gladd`` command tree's definitions, cheap to build: each command's arguments and
help here, its implementation imported only when it runs (:func:`lazy`), so ``gladd
--version`` or ``gladd status`` does not pay for the daemon's imports (issue 15).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

Handler = Callable[[argparse.Namespace], int]


def lazy(module: str, function: str) -> Handler:
    """A handler that imports ``module`` when it runs, and calls its ``function``."""

    def handler(args: argparse.Namespace) -> int:
        code: int = getattr(importlib.import_module(module), function)(args)
        return code

    handler.__qualname__ = f"{module}.{function}"
    return handler


def add_check_command(commands: Any) -> None:
    """Register ``check`` with the main parser's subcommands."""
    check = commands.add_parser(
        "check",
        help="validate a policies file and the plugins it configures; summarise them",
        description="Exit code: 0 valid, 78 invalid policies, a broken or misconfigured "
        "plugin (0 for plugins with --allow-broken-plugins), a schedule whose kind is "
        "unknown or refuses its payload, or a partition on a field its kind's payload "
        "does not declare.",
    )
    check.add_argument("path", nargs="?", type=Path, help="default: the configured policies")
    check.add_argument("--env-file", type=Path, help="read GLADD_* settings from this file")
    check.add_argument(
        "--allow-broken-plugins",
        action="store_true",
        help="exit 0 when only plugins are wrong (the daemon runs without them); still listed",
    )
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.set_defaults(command="check", handler=lazy("gladd.cli.check", "run_check"))
