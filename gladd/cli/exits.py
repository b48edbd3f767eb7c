"""How a command ends: its exit code, and its problems on stderr.

Exit codes follow sysexits(3) where one fits, so scripts and systemd can tell a config
error from a crash.
"""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_CONFLICT = 1  # the task's state forbids it: cancel a finished task, retry a live one
EXIT_TASK_DEAD = 1  # `tasks wait`: the task is dead (it can never conflict there)
EXIT_TASK_CANCELLED = 3  # `tasks wait`: the task was cancelled (2 is argparse's usage error)
EXIT_USAGE = 64  # EX_USAGE
EXIT_CONFIG = 78  # EX_CONFIG: policies or settings are wrong
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: could not start, or no daemon / database to talk to
EXIT_DATAERR = 65  # EX_DATAERR: a task refused (unknown kind, invalid payload)
EXIT_NOINPUT = 66  # EX_NOINPUT: no such task
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: stopped, but some running tasks wait for a lease rescue;
# `tasks wait`: the timeout passed first (the task goes on: waiting again may succeed)
EXIT_INTERRUPTED = 130
"""128 + SIGINT, what a shell reports for a command stopped by Ctrl-C."""


def fail(message: str) -> None:
    """Each line of ``message`` on stderr, prefixed ``gladd:`` unless it says where already."""
    for line in message.splitlines():
        print(f"gladd: {line}" if not _located(line) else line, file=sys.stderr)


def _located(line: str) -> bool:
    # "policies.toml:4:15: ..." and "/etc/gladd/policies.toml: ..." lines already say where.
    head = line.split(":", 1)[0]
    return " " not in head and (head.endswith(".toml") or "/" in head)
