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

from gladd.cli.flags import settings_flags

Handler = Callable[[argparse.Namespace], int]
TARGET_HELP = "a task kind, or service:NAME, limit:NAME, cooldown:SERVICE"


def build_parser() -> argparse.ArgumentParser:
    """Every command, none of their implementations imported."""
    from gladd.version import __version__  # noqa: PLC0415 - a leaf module, for --version

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
    add_task_commands(commands)
    add_pause_commands(commands)
    add_status_command(commands, settings_flags, handler=lazy("gladd.cli.status", "run"))
    add_breaker_commands(commands)
    add_policies_commands(commands)
    return parser


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
    check.set_defaults(command="check", handler=lazy("gladd.cli.check", "run_check"))


def add_run_command(commands: Any) -> None:
    """Register ``run`` with the main parser's subcommands."""
    run = commands.add_parser("run", help="run the daemon in the foreground")
    settings_flags(run)
    run.set_defaults(command="run", handler=lazy("gladd.cli.run", "run_daemon"))


def add_reload_command(commands: Any) -> None:
    """Register ``reload`` with the main parser's subcommands."""
    reload = commands.add_parser(
        "reload", help="ask the running daemon to reload policies.toml; prints the verdict"
    )
    reload.add_argument("--admin-host", metavar="HOST", help="the daemon's admin address")
    reload.add_argument("--admin-port", type=int, metavar="PORT", help="the daemon's admin port")
    reload.add_argument("--env-file", type=Path, metavar="PATH", help="read GLADD_* settings")
    reload.set_defaults(command="reload", handler=lazy("gladd.cli.reload", "run_reload"))


def _add_wait(verbs: Any) -> None:
    wait = verbs.add_parser(
        "wait",
        help="wait for a task to finish; prints its result (or its last error); "
        "exit 0 succeeded, 1 dead, 3 cancelled, 75 timed out, 66 no such task",
    )
    wait.add_argument("id", type=int)
    wait.add_argument("--timeout", help='give up after this long, e.g. "30s" (default: never)')
    wait.add_argument("--json", action="store_true", help="print the task as `show --json`")
    wait.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress lines on stderr while waiting (default: when stderr is a terminal)",
    )
    wait.set_defaults(verb="wait", handler=lazy("gladd.cli.tasks", "run_wait"))


def add_task_commands(commands: Any) -> None:
    """Register ``tasks``, ``schedules`` and ``db`` with the main parser's subcommands."""
    on_store = lazy("gladd.cli.tasks", "run_on_store")
    tasks = commands.add_parser("tasks", help="enqueue, inspect, cancel and retry tasks")
    verbs = tasks.add_subparsers(title="verbs", metavar="VERB", required=True)

    enqueue = verbs.add_parser(
        "enqueue", help="add a task, or a batch of them with --from-file; prints the ids"
    )
    enqueue.add_argument("kind", nargs="?", help="the task's kind (not with --from-file)")
    enqueue.add_argument("--payload", help="JSON payload (default {})")
    enqueue.add_argument("--delay", help='run after this long, e.g. "30s"')
    enqueue.add_argument("--priority", type=int, help="higher runs first (-1000..1000)")
    enqueue.add_argument("--unique-key", help="at most one unfinished task per key")
    enqueue.add_argument(
        "--from-file",
        metavar="FILE",
        help="a batch: JSON Lines, one POST /tasks object a line (- reads stdin); "
        "all stored in one transaction, or none",
    )
    enqueue.set_defaults(verb="enqueue", handler=lazy("gladd.cli.enqueue", "run_enqueue"))

    listing = verbs.add_parser("list", help="list tasks, newest first")
    listing.add_argument("--state", help="pending, running, succeeded, dead or cancelled")
    listing.add_argument("--kind")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(verb="list")

    show = verbs.add_parser("show", help="one task with its error history")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(verb="show")

    _add_wait(verbs)

    for name, helptext in (
        ("retry", "put a dead or cancelled task back to pending"),
        ("cancel", "cancel a pending or running task"),
    ):
        verb = verbs.add_parser(name, help=helptext)
        verb.add_argument("id", type=int)
        verb.set_defaults(verb=name)

    purge = verbs.add_parser("purge", help="delete finished tasks older than a duration")
    purge.add_argument("--older-than", default="7d", help='e.g. "7d" (default)')
    purge.add_argument(
        "--state",
        action="append",
        metavar="STATE",
        help="succeeded, dead or cancelled (repeat, or comma-separate; default: all three)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="count what would be purged; delete nothing"
    )
    purge.set_defaults(verb="purge")

    for parser in verbs.choices.values():
        settings_flags(parser)
        parser.set_defaults(handler=parser.get_default("handler") or on_store)
    tasks.set_defaults(command="tasks")

    schedules = commands.add_parser(
        "schedules", help="the schedules: next and last fire, last outcome; `run NAME` fires one"
    )
    schedules.add_argument("--json", action="store_true")
    settings_flags(schedules)
    schedules.set_defaults(command="schedules", handler=on_store, verb="schedules")
    schedule_verbs = schedules.add_subparsers(title="verbs", metavar="VERB")
    run_now = schedule_verbs.add_parser("run", help="enqueue one run of a schedule now")
    run_now.add_argument("name")
    settings_flags(run_now)
    run_now.set_defaults(verb="run_schedule")

    db = commands.add_parser("db", help="the task store's schema")
    db_verbs = db.add_subparsers(title="verbs", metavar="VERB", required=True)
    for name, helptext, func in (
        ("migrate", "apply pending schema migrations", "migrate"),
        ("status", "show the schema version", "migrate_status"),
    ):
        verb = db_verbs.add_parser(name, help=helptext)
        settings_flags(verb)
        verb.set_defaults(verb=func, migrate=name == "migrate", create=name == "migrate")
    db.set_defaults(command="db", handler=on_store)


def add_pause_commands(commands: Any) -> None:
    """Register ``pause``, ``resume`` and ``pauses`` with the main parser's subcommands."""
    handler = lazy("gladd.cli.pauses", "run_on_store")
    pause = commands.add_parser(
        "pause", help="stop claiming a kind's (service's, limit's) tasks on every node"
    )
    pause.add_argument("target", help=TARGET_HELP)
    lasting = pause.add_mutually_exclusive_group()
    lasting.add_argument(
        "--for", dest="duration", help='how long, e.g. "10m" (default: until resumed)'
    )
    lasting.add_argument(
        "--until", help="until this time, ISO 8601 with a zone, e.g. 2027-01-05T14:00Z"
    )
    pause.add_argument("--reason", default="", help="shown by `gladd pauses` and in the logs")
    pause.set_defaults(verb="pause")

    resume = commands.add_parser("resume", help="end a pause set by `gladd pause` (or a cooldown)")
    resume.add_argument("target", help=TARGET_HELP)
    resume.set_defaults(verb="resume")

    pauses = commands.add_parser("pauses", help="the pauses in force, and the kinds they hold")
    pauses.add_argument("--json", action="store_true")
    pauses.set_defaults(verb="pauses")

    for parser in (pause, resume, pauses):
        settings_flags(parser)
        parser.set_defaults(command=parser.prog.split()[-1], handler=handler)


def add_status_command(
    commands: Any,
    settings_flags: Callable[[argparse.ArgumentParser], None],
    *,
    handler: Callable[[argparse.Namespace], int],
) -> None:
    """Register ``status`` with the main parser's subcommands."""
    status = commands.add_parser(
        "status",
        help="ask the running daemon: health, policies, breakers, pool, executor, alerts",
        description="Exit code: 0 pass, 1 warn, 2 fail, 69 no daemon answers.",
    )
    status.add_argument("--json", action="store_true", help="print the health report as JSON")
    status.add_argument(
        "--url", metavar="URL", help="the admin API (default: http://ADMIN_HOST:ADMIN_PORT)"
    )
    settings_flags(status)
    status.set_defaults(command="status", handler=handler)


def add_breaker_commands(commands: Any) -> None:
    """Register ``breakers`` (and its ``isolate`` / ``reset`` verbs)."""
    handler = lazy("gladd.cli.breakers", "run")
    breakers = commands.add_parser(
        "breakers",
        help="the running daemon's circuit breakers: state, why open, next probe",
        description="Exit code: 0 done, 66 no such breaker, 69 no daemon answers.",
    )
    verbs = breakers.add_subparsers(title="verbs", metavar="VERB")
    isolate = verbs.add_parser(
        "isolate", help="hold a breaker open on every node (no call, no probe) until reset"
    )
    reset = verbs.add_parser("reset", help="close a breaker and forget its failures")
    for parser, verb in ((breakers, None), (isolate, "isolate"), (reset, "reset")):
        if verb is not None:
            parser.add_argument("name", help="POLICY:TARGET as listed, or the service it guards")
        parser.add_argument("--json", action="store_true", help="print the answer as JSON")
        parser.add_argument(
            "--url", metavar="URL", help="the admin API (default: http://ADMIN_HOST:ADMIN_PORT)"
        )
        settings_flags(parser)
        parser.set_defaults(command="breakers", handler=handler, breaker_verb=verb)


def add_policies_commands(commands: Any) -> None:
    """Register ``policies`` (and its ``history`` verb)."""
    policies = commands.add_parser(
        "policies", help="the running daemon's policies: `history` of generations and rejections"
    )
    verbs = policies.add_subparsers(title="verbs", metavar="VERB", required=True)
    history = verbs.add_parser(
        "history",
        help="each generation since start (time, trigger, sha256, changes, diff), newest "
        "first, and the last rejection",
        description="Exit code: 0 done, 64 a bad --limit, 69 no daemon answers.",
    )
    history.add_argument("--limit", metavar="N", help="only the newest N generations")
    history.add_argument("--json", action="store_true", help="print the answer as JSON")
    history.add_argument(
        "--url", metavar="URL", help="the admin API (default: http://ADMIN_HOST:ADMIN_PORT)"
    )
    settings_flags(history)
    history.set_defaults(command="policies", handler=lazy("gladd.cli.policies", "run_history"))
