"""The ``gladd`` command line, one module per command; :func:`main` is its entry point.

Ctrl-C from the very first line exits quietly with 130. Importing a command's
implementation can take a noticeable fraction of a second, and a SIGINT in that window used
to print a ``KeyboardInterrupt`` traceback; so this module imports nothing heavy (nor does
:mod:`gladd`, PEP 562) and :func:`main` imports the command tree inside its guard — the
tree imports each implementation only when its command runs (:mod:`gladd.cli.tree`), still
inside the guard, which holds until the daemon's own signal handling takes over (a SIGINT
after that is a graceful stop, see :class:`gladd.daemon.Daemon`).
"""

from __future__ import annotations

from collections.abc import Sequence

from gladd.cli.exits import EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from gladd.cli.commands import run_command  # noqa: PLC0415 - guarded: see above

        return run_command(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
