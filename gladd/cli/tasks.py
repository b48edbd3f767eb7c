"""``gladd tasks ...`` and ``gladd db ...``: operate on the store directly, daemon or not.

They work on the store the settings name (the service's, through its env file, on a host
that runs it) and never create one: pointed at a store that is not there they say so, with
where they looked, and exit 69. ``gladd db migrate`` is the one command that creates a store.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from gladd.admin.fast_enqueue import parse_items
from gladd.cli.bulk import act_on_all
from gladd.cli.enqueue_args import BatchFile, trace_carrier
from gladd.cli.exits import (
    EXIT_DATAERR,
    EXIT_TASK_CANCELLED,
    EXIT_TASK_DEAD,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    fail,
)
from gladd.cli.flags import settings_from
from gladd.cli.listing import list_tasks, stats
from gladd.cli.timeline import timeline_lines
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
from gladd.executor.catalogue import CatalogueKinds
from gladd.executor.service import TaskService, parse_state, task_json
from gladd.executor.waiting import wait_seconds
from gladd.light_settings import (
    SERVICE_ENV_FILE,
    env_file_in_use,
    unreadable_service_env_file,
)
from gladd.policies import load_policies
from gladd.settings import Settings
from gladd.store import Task, TaskState
from gladd.store.base import FINISHED_STATES
from gladd.store.configure import configured_store
from gladd.store.urls import mask_url

Verb = Callable[[argparse.Namespace, TaskService], Awaitable[int]]


@asynccontextmanager
async def _service(
    settings: Settings, *, migrate: bool = True, create: bool = False
) -> AsyncIterator[TaskService]:
    policies = load_policies(settings.policies_path).policies
    store = configured_store(settings.store_url, policies, waits_for_work=False)
    await store.open(migrate=migrate, create=create)
    try:
        # The kinds the daemon published, as gladd.Client checks them: no plugin imported.
        kinds = CatalogueKinds(store)
        if migrate:  # a schema left as found (`db status`) may not have the catalogue yet
            await kinds.refresh_for(())
        yield TaskService(store, kinds, lambda: policies)
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()


def run_on_store(args: argparse.Namespace) -> int:
    """The handler of ``tasks`` (but ``enqueue``'s, see :mod:`gladd.cli.enqueue`),
    ``schedules`` and ``db``: the verb ``args.verb`` names, on the settings' store."""
    return run_verb(args, settings_from(args), VERBS)


def run_verb(args: argparse.Namespace, settings: Settings, verbs: Mapping[str, Verb]) -> int:
    """``verbs[args.verb]`` on the store ``settings`` name; its exit code."""
    verb = verbs[args.verb]
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


async def _enqueue(args: argparse.Namespace, service: TaskService) -> int:
    # The caller's trace (TRACEPARENT): this enqueue joins it when traces are on.
    carrier = trace_carrier()
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
        source="cli",
    )
    print(enqueued.id)
    if not enqueued.created:
        print(
            f"gladd: task {enqueued.id} with unique key {args.unique_key!r} already exists",
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
        enqueued = await service.enqueue_many(items, trace=trace, refused=refused, source="cli")
    except BatchRejected as exc:
        for problem in exc.problems:
            where = f"{batch.name}:{batch.lines[problem.index]}"
            field = f" {problem.field}:" if problem.field else ""
            print(f"{where}:{field} {problem.message}", file=sys.stderr)
        print(f"gladd: nothing stored from {batch.name}", file=sys.stderr)
        return EXIT_DATAERR
    for line, item, done in zip(batch.lines, items, enqueued, strict=True):
        print(done.id)
        if not done.created:
            print(
                f"{batch.name}:{line}: task {done.id} with unique key "
                f"{item.get('unique_key')!r} already exists",
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
    print(enqueued.id)
    return 0


async def _show(args: argparse.Namespace, service: TaskService) -> int:
    task = await service.get(args.id)
    waiting = await service.waiting(task)
    if args.json:
        print(json.dumps({**task_json(task, timeline=True), "waiting": waiting}, indent=2))
        return 0
    print(describe(task))
    for reason in waiting:
        print(f"  waiting: {reason}")
    return 0


def run_one_or_all(args: argparse.Namespace) -> int:
    """The handler of ``tasks retry|cancel``: an ID, or ``--all`` with filter flags."""
    filtered = [f"--{n}" for n in ("state", "kind", "error", "since", "until") if getattr(args, n)]
    if args.all == (args.id is not None):
        fail(f"tasks {args.verb}: give a task ID, or --all with filter flags (not both)")
        return EXIT_USAGE
    if args.id is not None and (filtered or args.yes):
        fail(f"tasks {args.verb}: {', '.join(filtered or ['--yes'])}: only with --all, not an ID")
        return EXIT_USAGE
    return run_on_store(args)


def run_wait(args: argparse.Namespace) -> int:
    """The handler of ``tasks wait``: its ``--timeout`` checked before the store is opened."""
    text = args.timeout
    try:
        args.timeout_seconds = (
            None if text is None else wait_seconds(float(text) if _is_number(text) else text)
        )
    except ValueError as exc:
        fail(f"--timeout {text}: {exc}")
        return EXIT_USAGE
    return run_on_store(args)


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
    keys += ("unique_key", "rescues", "created_at", "started_at", "finished_at", "traceparent")
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
    lines += timeline_lines(task.timeline)
    return "\n".join(lines)


async def _retry(args: argparse.Namespace, service: TaskService) -> int:
    if args.all:
        return await act_on_all(args, service)
    task = await service.retry(args.id, by="cli")
    print(f"task {task.id}: {task.state.value}")
    return 0


async def _cancel(args: argparse.Namespace, service: TaskService) -> int:
    if args.all:
        return await act_on_all(args, service)
    task = await service.cancel(args.id, by="cli")
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


VERBS: dict[str, Verb] = {
    "enqueue": _enqueue,
    "list": list_tasks,
    "stats": stats,
    "show": _show,
    "wait": _wait,
    "retry": _retry,
    "cancel": _cancel,
    "purge": _purge,
    "schedules": _schedules,
    "run_schedule": _run_schedule,
    "migrate": _migrate,
    "migrate_status": _migrate_status,
}
"""Each verb by the name the command tree gives it (:mod:`gladd.cli.tree`)."""
