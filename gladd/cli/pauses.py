"""``gladd pause``, ``gladd resume``, ``gladd pauses``: the operator's brake.

A pause is written to the store the settings name, so every node sharing it stops claiming
the target's tasks (within a second on PostgreSQL, announced by NOTIFY; at once on SQLite,
by the doorbell), and the daemon need not be reachable. Tasks held back stay pending and
spend no attempt. Exit codes: 0 done, 66 unknown target, 65 a bad duration or time, 1 a
resume of what only the policies pause.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
from datetime import UTC, datetime

from gladd.cli.exits import EXIT_CONFLICT, fail
from gladd.cli.flags import settings_from
from gladd.cli.tasks import Verb, run_verb
from gladd.durations import format_duration, parse_duration
from gladd.errors import TaskRejected
from gladd.executor.flow import normal_target
from gladd.executor.service import TaskService


def run_on_store(args: argparse.Namespace) -> int:
    """The handler of ``pause``, ``resume`` and ``pauses``."""
    return run_verb(args, settings_from(args), VERBS)


def operator() -> str:
    """Who is asking, as a pause records it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a container)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


async def _pause(args: argparse.Namespace, service: TaskService) -> int:
    seconds = until = None
    try:
        if args.duration is not None:
            seconds = parse_duration(args.duration)
        if args.until is not None:
            until = datetime.fromisoformat(args.until)
    except ValueError as exc:
        raise TaskRejected(
            f"{'--for' if args.duration is not None else '--until'}: {exc}"
        ) from None
    pause = await service.pause(
        args.target, seconds=seconds, until=until, reason=args.reason, by=operator()
    )
    shown = next(p for p in await service.pauses() if p["target"] == pause.target)
    lasting = f"until {_when(pause.until.isoformat())}" if pause.until else "until resumed"
    if seconds is not None:
        lasting += f" ({format_duration(seconds)})"
    print(
        f"paused {pause.target} {lasting}; holds back: {', '.join(shown['kinds']) or 'no kind yet'}"
    )
    return 0


async def _resume(args: argparse.Namespace, service: TaskService) -> int:
    ended = await service.resume(args.target)
    target = normal_target(args.target, service.policies(), service.kinds)
    if ended is not None:
        since = _when(ended.created_at.isoformat())
        print(f"resumed {ended.target} (paused by {ended.by} at {since})")
        return 0
    if any(p["target"] == target and p["source"] == "policies" for p in await service.pauses()):
        fail(
            f"{target} is paused in the policies (paused = true): set it to false in "
            "policies.toml and reload to resume it"
        )
        return EXIT_CONFLICT
    print(f"{target} was not paused")
    return 0


async def _pauses(args: argparse.Namespace, service: TaskService) -> int:
    shown = await service.pauses()
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(f"store: {service.store.url}")
    if not shown:
        print("no pauses: every kind is claimed")
        return 0
    print(f"{'TARGET':<28}  {'UNTIL':<25}  {'BY':<24}  KINDS / REASON")
    for p in shown:
        until = _when(p["until"]) if p["until"] else "resumed"
        print(f"{p['target']:<28}  {until:<25}  {p['by']:<24}  {', '.join(p['kinds']) or '-'}")
        if p["reason"]:
            print(f"{'':<28}  {'':<25}  {'':<24}  {p['reason']}")
    return 0


def _when(iso: str) -> str:
    """An ISO 8601 UTC time as the tables show it: to the second, ``2027-01-05 14:00:00Z``."""
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}Z"


VERBS: dict[str, Verb] = {"pause": _pause, "resume": _resume, "pauses": _pauses}
"""Each verb by the name the command tree gives it (:mod:`gladd.cli.tree`)."""
