"""The ``gladd`` command tree: ``run``, ``check``, ``reload``, ``tasks``, ``schedules``,
``pause``, ``resume``, ``pauses``, ``db``, ``status``.

Operator mistakes (bad policies, bad settings, a port in use) print one precise message
per problem on stderr and exit non-zero, never a traceback: each error of the tree in
:mod:`gladd.errors` has its exit code (:mod:`gladd.cli.exits`). The commands are defined in
:mod:`gladd.cli.tree`, each implementation imported only when its command runs.
"""

from __future__ import annotations

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
from gladd.cli.tree import build_parser
from gladd.errors import (
    ConfigError,
    GladdError,
    TaskRejected,
    TaskStateConflict,
    UnknownTask,
)

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
    parser = build_parser()
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
