"""``gladd tasks ...`` and ``gladd db ...``: operate on the store directly, daemon or not.

They work on the store the settings name (the service's, through its env file, on a host
that runs it) and never create one: pointed at a store that is not there they say so, with
where they looked, and exit 69. ``gladd db migrate`` is the one command that creates a store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from gladd.admin.tasks import parse_items
from gladd.cli.exits import (
    EXIT_DATAERR,
    EXIT_NOINPUT,
    EXIT_TASK_CANCELLED,
    EXIT_TASK_DEAD,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    fail,
)
from gladd.cli.traces import traced
from gladd.durations import format_duration, parse_duration
from gladd.errors import (
    BatchRejected,
    SettingsError,
    StoreError,
    StoreNotFound,
    TaskRejected,
    UnknownTask,
    WaitTimeout,
)
from gladd.executor.service import TaskService, parse_state, task_json
from gladd.executor.waiting import wait_seconds
from gladd.plugins.known_kinds import known_kinds
from gladd.policies import load_policies
from gladd.settings import (
    SERVICE_ENV_FILE,
    Settings,
    env_file_in_use,
    unreadable_service_env_file,
)
from gladd.store import Task, TaskState
from gladd.store.base import FINISHED_STATES
from gladd.store.configure import configured_store
from gladd.store.urls import mask_url

SettingsLoader = Callable[[argparse.Namespace], Settings]
TRACE_ENV = ("TRACEPARENT", "TRACESTATE")


def add_commands(
    commands: Any,
    settings_flags: Callable[[argparse.ArgumentParser], None],
    *,
    handler: Callable[[argparse.Namespace], int],
) -> None:
    """Register ``tasks`` and ``db`` with the main parser's subcommands."""
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
    enqueue.set_defaults(verb=_enqueue, prepare=_prepare_enqueue)

    listing = verbs.add_parser("list", help="list tasks, newest first")
    listing.add_argument("--state", help="pending, running, succeeded, dead or cancelled")
    listing.add_argument("--kind")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(verb=_list)

    show = verbs.add_parser("show", help="one task with its error history")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(verb=_show)

    _add_wait(verbs)

    for name, helptext, func in (
        ("retry", "put a dead or cancelled task back to pending", _retry),
        ("cancel", "cancel a pending or running task", _cancel),
    ):
        verb = verbs.add_parser(name, help=helptext)
        verb.add_argument("id", type=int)
        verb.set_defaults(verb=func)

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
    purge.set_defaults(verb=_purge)

    for parser in verbs.choices.values():
        settings_flags(parser)
    tasks.set_defaults(command="tasks", handler=handler)

    schedules = commands.add_parser(
        "schedules", help="the schedules: next and last fire, last outcome; `run NAME` fires one"
    )
    schedules.add_argument("--json", action="store_true")
    settings_flags(schedules)
    schedules.set_defaults(command="schedules", handler=handler, verb=_schedules)
    schedule_verbs = schedules.add_subparsers(title="verbs", metavar="VERB")
    run_now = schedule_verbs.add_parser("run", help="enqueue one run of a schedule now")
    run_now.add_argument("name")
    settings_flags(run_now)
    run_now.set_defaults(verb=_run_schedule)

    db = commands.add_parser("db", help="the task store's schema")
    db_verbs = db.add_subparsers(title="verbs", metavar="VERB", required=True)
    for name, helptext, func in (
        ("migrate", "apply pending schema migrations", _migrate),
        ("status", "show the schema version", _migrate_status),
    ):
        verb = db_verbs.add_parser(name, help=helptext)
        settings_flags(verb)
        verb.set_defaults(verb=func, migrate=name == "migrate", create=name == "migrate")
    db.set_defaults(command="db", handler=handler)


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
    wait.set_defaults(verb=_wait, prepare=_prepare_wait)


@asynccontextmanager
async def _service(
    settings: Settings, *, migrate: bool = True, create: bool = False
) -> AsyncIterator[TaskService]:
    policies = load_policies(settings.policies_path).policies
    store = configured_store(settings.store_url, policies)
    await store.open(migrate=migrate, create=create)
    try:
        yield TaskService(store, known_kinds(policies, settings.plugin_paths), lambda: policies)
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()


def run_verb(args: argparse.Namespace, settings: Settings) -> int:
    verb: Callable[[argparse.Namespace, TaskService], Awaitable[int]] = args.verb
    # What needs no store (the arguments, an input file) is checked before opening one.
    prepare: Callable[[argparse.Namespace], int | None] | None = getattr(args, "prepare", None)
    if prepare is not None and (code := prepare(args)) is not None:
        return code
    migrate, create = getattr(args, "migrate", True), getattr(args, "create", False)

    async def main() -> int:
        async with _service(settings, migrate=migrate, create=create) as service:
            return await verb(args, service)

    try:
        with traced(settings, quiet=True):
            return anyio.run(main)
    except StoreNotFound as exc:
        raise StoreNotFound(f"{exc}\n{where_from(settings, args.env_file)}") from exc
    except StoreError as exc:
        if isinstance(exc, UnknownTask) or mask_url(settings.store_url) in str(exc):
            raise
        raise type(exc)(f"{exc} (store: {mask_url(settings.store_url)})") from exc


def where_from(settings: Settings, env_file: Path | None) -> str:
    """Which settings chose the store, and how to point at the daemon's instead."""
    used = env_file_in_use(env_file)
    source = f"settings from the env file {used}" if used else "no env file"
    if settings.database_url is None:
        source += f", the state directory {settings.state_dir}"
    lines = [
        f"this store comes from {source} (flags > GLADD_* > env file > defaults); "
        "nothing was created"
    ]
    unreadable = unreadable_service_env_file()
    if used is None and unreadable is not None:
        lines.append(
            f"{unreadable}, the service's settings, exists but this user may not read it: "
            "run as the service's user (sudo -u gladd gladd ...) or root"
        )
    lines.append(
        "to use the daemon's store: --env-file PATH (the service's: "
        f"{SERVICE_ENV_FILE}), --database-url URL or --state-dir DIR; "
        "`gladd db migrate` creates a new store"
    )
    return "\n".join(lines)


def _prepare_enqueue(args: argparse.Namespace) -> int | None:
    """Refuse a usage error (64); with --from-file, read its lines into ``args.batch``
    (66 when it cannot be read, 65 with each line that is not JSON)."""
    single = {
        "--payload": args.payload,
        "--delay": args.delay,
        "--priority": args.priority,
        "--unique-key": args.unique_key,
    }
    given = [flag for flag, value in single.items() if value is not None]
    if args.from_file is None and args.kind is None:
        fail("tasks enqueue: give a KIND, or --from-file FILE for a batch")
        return EXIT_USAGE
    if args.from_file is not None and (args.kind is not None or given):
        also = ", ".join(["KIND"] * (args.kind is not None) + given)
        fail(f"tasks enqueue: --from-file takes the tasks from its file, not {also}")
        return EXIT_USAGE
    if args.from_file is None:
        return None
    name = "<stdin>" if args.from_file == "-" else args.from_file
    try:
        data = sys.stdin.buffer.read() if args.from_file == "-" else Path(name).read_bytes()
    except OSError as exc:
        fail(f"cannot read {name}: {exc.strerror or exc}")
        return EXIT_NOINPUT
    lines, problems = read_json_lines(data)
    if problems:
        for line, message in problems:
            print(f"{name}:{line}: {message}", file=sys.stderr)
        return EXIT_DATAERR
    args.batch = BatchFile(name=name, lines=[n for n, _ in lines], items=[i for _, i in lines])
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFile:
    """The items of ``--from-file``, each with the line it came from."""

    name: str
    lines: list[int]
    items: list[Any]


def read_json_lines(data: bytes) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """Each line of ``data`` that is not blank as (line number, value), and each that is
    not JSON as (line number, why)."""
    values: list[tuple[int, Any]] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line, parse_constant=_not_a_number)))
        except RecursionError:
            problems.append((number, "not JSON: nested too deeply to decode"))
        except ValueError as exc:  # also UnicodeDecodeError
            problems.append((number, f"not JSON: {exc}"))
    return values, problems


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _enqueue(args: argparse.Namespace, service: TaskService) -> int:
    # The caller's trace, as programs hand it to a child process (OpenTelemetry's
    # environment-variable carrier): this enqueue joins it when traces are on.
    carrier = {name.lower(): os.environ[name] for name in TRACE_ENV if os.environ.get(name)}
    if args.from_file is not None:
        return await _enqueue_batch(args.batch, service, carrier or None)
    try:
        payload = json.loads("{}" if args.payload is None else args.payload)
    except ValueError as exc:
        raise TaskRejected(f"--payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise TaskRejected("--payload is nested too deeply to decode") from None
    try:
        delay = parse_duration("0s" if args.delay is None else args.delay)
    except ValueError as exc:
        raise SettingsError(f"--delay: {exc}") from None
    enqueued = await service.enqueue(
        args.kind,
        payload,
        delay=delay,
        priority=args.priority,
        unique_key=args.unique_key,
        trace=carrier or None,
    )
    print(enqueued.task.id)
    if not enqueued.created:
        print(
            f"gladd: task {enqueued.task.id} with unique key {args.unique_key!r} already exists",
            file=sys.stderr,
        )
    return 0


async def _enqueue_batch(
    batch: BatchFile, service: TaskService, trace: dict[str, str] | None
) -> int:
    """All of the file's tasks in one transaction, or (65) none, each refused line as
    ``FILE:LINE: field: message`` on stderr."""
    try:
        items, refused = parse_items(batch.items)
        enqueued = await service.enqueue_many(items, trace=trace, refused=refused)
    except BatchRejected as exc:
        for problem in exc.problems:
            where = f"{batch.name}:{batch.lines[problem.index]}"
            field = f" {problem.field}:" if problem.field else ""
            print(f"{where}:{field} {problem.message}", file=sys.stderr)
        print(f"gladd: nothing stored from {batch.name}", file=sys.stderr)
        return EXIT_DATAERR
    for line, done in zip(batch.lines, enqueued, strict=True):
        print(done.task.id)
        if not done.created:
            print(
                f"{batch.name}:{line}: task {done.task.id} with unique key "
                f"{done.task.unique_key!r} already exists",
                file=sys.stderr,
            )
    return 0


async def _schedules(args: argparse.Namespace, service: TaskService) -> int:
    shown = await service.schedules()
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(f"store: {service.store.url}")
    if not shown:
        print("no schedules in the policies")
        return 0
    print(f"{'NAME':<24}  {'WHEN':<22}  {'KIND':<20}  {'NEXT (UTC)':<20}  {'LAST FIRED':<20}  LAST")
    for s in shown:
        when = f"cron {s['cron']}" if s["cron"] else f"every {format_duration(s['every'])}"
        if s["timezone"] != "UTC":
            when += f" {s['timezone']}"
        upcoming = "paused" if s["paused"] else _short(s["next_fire"])
        print(
            f"{s['name']:<24}  {when:<22}  {s['kind']:<20}  {upcoming:<20}  "
            f"{_short(s['last_fired_at']):<20}  {s['last_outcome'] or '-'}"
        )
    return 0


def _short(moment: object) -> str:
    return "-" if moment is None else str(moment)[:19].replace("T", " ")


async def _run_schedule(args: argparse.Namespace, service: TaskService) -> int:
    enqueued = await service.run_schedule(args.name)
    print(enqueued.task.id)
    return 0


async def _list(args: argparse.Namespace, service: TaskService) -> int:
    tasks = await service.list(state=args.state, kind=args.kind, limit=args.limit)
    if args.json:
        print(json.dumps([task_json(t) for t in tasks], indent=2))
        return 0
    print(f"store: {service.store.url}")
    print(f"{'ID':>8}  {'STATE':<9}  {'KIND':<24}  {'ATTEMPT':>7}  RUN AT")
    for t in tasks:
        attempt = f"{t.attempt}/{t.max_attempts}"
        run_at = f"{t.run_at:%Y-%m-%d %H:%M:%S}"
        print(f"{t.id:>8}  {t.state.value:<9}  {t.kind:<24}  {attempt:>7}  {run_at}")
    return 0


async def _show(args: argparse.Namespace, service: TaskService) -> int:
    task = await service.get(args.id)
    waiting = await service.waiting(task)
    if args.json:
        print(json.dumps({**task_json(task), "waiting": waiting}, indent=2))
        return 0
    print(describe(task))
    for reason in waiting:
        print(f"  waiting: {reason}")
    return 0


def _prepare_wait(args: argparse.Namespace) -> int | None:
    text = args.timeout
    if text is None:
        args.timeout_seconds = None
        return None
    try:
        args.timeout_seconds = wait_seconds(float(text) if _is_number(text) else text)
    except ValueError as exc:
        fail(f"--timeout {text}: {exc}")
        return EXIT_USAGE
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def _wait(args: argparse.Namespace, service: TaskService) -> int:
    show_progress = args.progress if args.progress is not None else sys.stderr.isatty()
    on_change = _progress_line if show_progress else None
    try:
        task = await service.wait(args.id, timeout=args.timeout_seconds, on_change=on_change)
    except WaitTimeout as exc:
        if args.json:
            print(json.dumps(task_json(exc.task), indent=2))
        fail(str(exc))
        return EXIT_TEMPFAIL
    if args.json:
        print(json.dumps(task_json(task), indent=2))
    elif task.state is TaskState.SUCCEEDED:
        print(json.dumps(task.result))
    elif task.errors:
        last = task.errors[-1]
        fail(f"task {task.id} {task.state.value} after attempt {last.attempt}: "
             f"{last.type}: {last.message}")  # fmt: skip
    else:
        fail(f"task {task.id} {task.state.value}")
    return {
        TaskState.SUCCEEDED: 0,
        TaskState.DEAD: EXIT_TASK_DEAD,
        TaskState.CANCELLED: EXIT_TASK_CANCELLED,
    }[task.state]


def _progress_line(task: Task) -> None:
    print(f"task {task.id}: {progress_text(task)}", file=sys.stderr, flush=True)


def progress_text(task: Task) -> str:
    """``running, attempt 2/5, 40% page 4 of 10``: where an unfinished task stands."""
    text = f"{task.state.value}, attempt {task.attempt}/{task.max_attempts}"
    p = task.progress
    if p is not None:
        text += f", {p.fraction:.0%}"
        if p.message:
            text += f" {p.message}"
        if p.attempt != task.attempt:
            text += f" (attempt {p.attempt})"
    return text


def describe(task: Task) -> str:
    data = task_json(task)
    lines = [f"task {task.id}: {task.kind} ({task.state.value})"]
    keys: tuple[str, ...] = ("attempt", "max_attempts", "priority", "run_at", "owner")
    keys += ("unique_key", "rescues", "created_at", "finished_at", "traceparent")
    keys += ("schedule", "scheduled_for")
    lines += [f"  {key}: {data[key]}" for key in keys if data[key] is not None]
    lines.append(f"  payload: {json.dumps(task.payload)}")
    if task.progress is not None:
        p = task.progress
        said = f" {p.message}" if p.message else ""
        lines.append(
            f"  progress: {p.fraction:.0%}{said} (attempt {p.attempt}, {p.at:%Y-%m-%d %H:%M:%S})"
        )
    if task.result is not None:
        lines.append(f"  result: {json.dumps(task.result)}")
    lines += [
        f"  error (attempt {e.attempt}, {e.at:%Y-%m-%d %H:%M:%S}): {e.type}: {e.message}"
        for e in task.errors
    ]
    return "\n".join(lines)


async def _retry(args: argparse.Namespace, service: TaskService) -> int:
    task = await service.retry(args.id)
    print(f"task {task.id}: {task.state.value}")
    return 0


async def _cancel(args: argparse.Namespace, service: TaskService) -> int:
    task = await service.cancel(args.id)
    note = " (cancellation requested; its worker stops it)" if task.cancel_requested else ""
    print(f"task {task.id}: {task.state.value}{note}")
    return 0


async def _purge(args: argparse.Namespace, service: TaskService) -> int:
    try:
        older_than = parse_duration(args.older_than)
    except ValueError as exc:
        raise SettingsError(f"--older-than: {exc}") from None
    states = purge_states(args.state)
    count = await service.purge(older_than=older_than, states=states, dry_run=args.dry_run)
    which = "/".join(sorted(states))
    if args.dry_run:
        print(f"would purge {count} {which} task(s) older than {args.older_than} (dry run)")
    else:
        print(f"purged {count} {which} task(s) older than {args.older_than}")
    return 0


def purge_states(given: list[str] | None) -> frozenset[TaskState]:
    """``--state`` values (repeated or comma-separated) as finished states; refuses an
    unknown state (TaskRejected) and an unfinished one (SettingsError, with the reason)."""
    if not given:
        return FINISHED_STATES
    names = {n.strip() for value in given for n in value.split(",") if n.strip()}
    states = {parse_state(name) for name in sorted(names)}
    unfinished = sorted(s.value for s in states if s is not None and not s.finished)
    if unfinished:
        raise SettingsError(
            f"--state {', '.join(unfinished)}: purge deletes finished tasks only "
            "(succeeded, dead, cancelled); cancel a pending or running task first"
        )
    return frozenset(s for s in states if s is not None)


async def _migrate(args: argparse.Namespace, service: TaskService) -> int:
    # Opening the store applies every pending migration (under a lock on PostgreSQL).
    status = await service.store.migration_status()
    applied = ", ".join(map(str, status.applied)) or "none (already up to date)"
    print(f"schema at version {status.current} of {status.latest}; applied now: {applied}")
    return 0


async def _migrate_status(args: argparse.Namespace, service: TaskService) -> int:
    # The store was opened without migrating: this is the schema as the daemon would find it.
    status = await service.store.migration_status()
    print(f"store: {service.store.url}")
    print(f"schema version {status.current} of {status.latest} known to this gladd")
    if status.pending:
        pending = ", ".join(map(str, status.pending))
        print(f"pending: {pending} (`gladd db migrate` or the next `gladd run` applies them)")
    elif status.current > status.latest:
        print("the database is newer than this gladd: upgrade gladd before running it here")
    return 0
