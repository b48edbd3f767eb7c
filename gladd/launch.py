"""The ``gladd`` command's entry point: Ctrl-C from the very first line exits quietly.

Importing the command takes a noticeable fraction of a second; a SIGINT in that window
used to print a ``KeyboardInterrupt`` traceback. Here the import itself is guarded, and
:func:`gladd.cli.main` guards the rest of start-up until the daemon's own signal handling
takes over (a SIGINT after that is a graceful stop).
"""

from __future__ import annotations

EXIT_INTERRUPTED = 130
"""128 + SIGINT, what a shell reports for a command stopped by Ctrl-C."""


def main() -> int:
    try:
        from gladd.cli.commands import main as run  # noqa: PLC0415 - guarded: see the module docstring
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return run()
