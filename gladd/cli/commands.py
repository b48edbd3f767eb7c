"""The ``gladd`` command tree: ``run``, ``check``, ``reload``, ``tasks``, ``schedules``,
``pause``, ``resume``, ``pauses``, ``db``, ``status``.

Operator mistakes (bad policies, bad settings, a port in use) print one precise message
per problem on stderr and exit non-zero, never a traceback: each error of the tree in
:mod:`gladd.errors` has its exit code (:mod:`gladd.cli.exits`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gladd.cli.exits import (
    EXIT_CONFIG,
    EXIT_CONFLICT,
    EXIT_DATAERR,
    EXIT_NOINPUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    fail,
)
from gladd.cli.flags import settings_flags, settings_from
from gladd.cli.pauses import add_pause_commands
from gladd.cli.reload import add_reload_command
from gladd.cli.run import add_run_command
from gladd.cli.status import add_status_command, run_status
from gladd.cli.tasks import add_commands, run_verb
from gladd.cli.tree import add_check_command
from gladd.errors import (
    ConfigError,
    GladdError,
    TaskRejected,
    TaskStateConflict,
    UnknownTask,
)
from gladd.version import __version__

EXIT_BY_ERROR: tuple[tuple[type[GladdError], int], ...] = (
    (ConfigError, EXIT_CONFIG),
    (TaskRejected, EXIT_DATAERR),
    (UnknownTask, EXIT_NOINPUT),
    (TaskStateConflict, EXIT_CONFLICT),
    (GladdError, EXIT_UNAVAILABLE),
)
"""An error's exit code is the first whose error it is; the root, last, takes the rest."""


def run_command(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run its command; the exit code. Ctrl-C is :func:`gladd.cli.main`'s."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
    except GladdError as exc:
        fail(str(exc))
        return next(exit_code for kind, exit_code in EXIT_BY_ERROR if isinstance(exc, kind))
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gladd",
        description="A resilience daemon driven by policies.toml.",
    )
    parser.add_argument("--version", action="version", version=f"gladd {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_run_command(commands)
    add_check_command(commands)
    add_reload_command(commands)
    add_commands(commands, settings_flags, handler=lambda args: run_verb(args, settings_from(args)))
    add_pause_commands(
        commands, settings_flags, handler=lambda args: run_verb(args, settings_from(args))
    )
    add_status_command(
        commands, settings_flags, handler=lambda args: run_status(args, settings_from(args))
    )
    return parser
