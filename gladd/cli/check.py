"""``gladd check``: validate a policies file and the plugins it configures; summarise them.

A check whose inputs have not changed since the last one prints that one's verdict again,
byte for byte and with its exit code, from a cache (:mod:`gladd.cli.check_cache`), in a
small fraction of the time a full check (:mod:`gladd.cli.check_verdict`) takes to import
the policies model and every plugin. This module imports only the cache, so the command
tree may import it up front: the full check is imported on a miss.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gladd.cli import check_cache

if TYPE_CHECKING:
    import argparse


def add_check_command(commands: Any) -> None:
    """Register ``check`` with the main parser's subcommands."""
    check = commands.add_parser(
        "check",
        help="validate a policies file and the plugins it configures; summarise them",
        description="Exit code: 0 valid, 78 invalid policies, a broken or misconfigured "
        "plugin (0 for plugins with --allow-broken-plugins), a schedule whose kind is "
        "unknown or refuses its payload, or a partition on a field its kind's payload "
        "does not declare. A verdict whose inputs have not changed is printed again from "
        "$XDG_CACHE_HOME/gladd/check (default ~/.cache/gladd/check).",
    )
    check.add_argument("path", nargs="?", type=Path, help="default: the configured policies")
    check.add_argument("--env-file", type=Path, help="read GLADD_* settings from this file")
    check.add_argument(
        "--allow-broken-plugins",
        action="store_true",
        help="exit 0 when only plugins are wrong (the daemon runs without them); still listed",
    )
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.add_argument(
        "--no-cache",
        action="store_true",
        help="check in full, neither reading nor storing a cached verdict",
    )
    check.set_defaults(command="check", handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """``gladd check``: the cached verdict when it still holds, else a full check (whose
    verdict is then kept); the exit code. What the command tree's handler calls."""
    key = None if getattr(args, "no_cache", False) else check_cache.verdict_key(args)
    if key is not None and (code := check_cache.replay(key)) is not None:
        return code
    from gladd.cli.check_verdict import full_check  # noqa: PLC0415 - the miss path only

    reads = check_cache.Reads(os.environ)
    started = time.time_ns()
    with check_cache.Recording() as recording:
        code = full_check(args, reads)
    if key is not None and check_cache.verdict_key(args) == key:
        check_cache.store(key, recording, code, reads, started_ns=started)
    return code
