"""``gladd tasks list`` (pages and filters) and ``gladd tasks stats`` (issue 14), on the
store directly as every ``tasks`` verb.

A page ends with ``more: gladd tasks list ... --cursor X`` when there is more: the same
command with the next page's cursor, ready to paste (on stderr with ``--json``, whose
stdout stays one JSON array).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from gladd.cli.exits import EXIT_USAGE, fail
from gladd.executor.service import TaskService, task_json
from gladd.store import TaskState
from gladd.store.base import TaskFilter
from gladd.store.listing import BadListing, check_limit, decode_cursor, parse_filter

FILTER_FLAGS = ("state", "kind", "error", "since", "until")


def filter_from(args: argparse.Namespace, service: TaskService) -> TaskFilter:
    """The filter the command's ``--state/--kind/--error/--since/--until`` describe."""
    return parse_filter(
        states=args.state or [],
        kind=args.kind,
        error=args.error,
        since=args.since,
        until=args.until,
        now=service.now(),
    )


def _bad(exc: BadListing) -> int:
    fail(f"--{exc.param}: {str(exc).split(': ', 1)[1]}")
    return EXIT_USAGE


async def list_tasks(args: argparse.Namespace, service: TaskService) -> int:
    try:
        where = filter_from(args, service)
        limit = check_limit(str(args.limit))
        before = None if args.cursor is None else decode_cursor(args.cursor)
    except BadListing as exc:
        return _bad(exc)
    page = await service.store.find(where, limit=limit, before=before)
    if args.json:
        print(json.dumps([task_json(t) for t in page.tasks], indent=2))
    else:
        print(f"store: {service.store.url}")
        print(f"{'ID':>8}  {'STATE':<9}  {'KIND':<24}  {'ATTEMPT':>7}  {'CREATED':<19}  RUN AT")
        for t in page.tasks:
            attempt = f"{t.attempt}/{t.max_attempts}"
            print(
                f"{t.id:>8}  {t.state.value:<9}  {t.kind:<24}  {attempt:>7}  "
                f"{t.created_at:%Y-%m-%d %H:%M:%S}  {t.run_at:%Y-%m-%d %H:%M:%S}"
            )
    if page.next is not None:
        print(f"more: {_next_command(args, page.next)}", file=sys.stderr if args.json else None)
    return 0


def _next_command(args: argparse.Namespace, cursor: str) -> str:
    words = ["gladd", "tasks", "list"]
    for name in FILTER_FLAGS:
        value = getattr(args, name)
        for one in value if isinstance(value, list) else [value]:
            if one:
                words += [f"--{name}", one]
    words += ["--limit", str(args.limit), "--cursor", cursor]
    if args.json:
        words.append("--json")
    return shlex.join(words)


async def stats(args: argparse.Namespace, service: TaskService) -> int:
    counted = await service.store.stats()
    totals = counted.totals
    if args.json:
        kinds = {k: {s.value: n for s, n in v.items()} for k, v in counted.by_kind.items()}
        body = {"kinds": kinds, "totals": {s.value: n for s, n in totals.items()}}
        print(json.dumps({**body, "total": sum(totals.values())}, indent=2))
        return 0
    print(f"store: {service.store.url}")
    states = list(TaskState)
    print(f"{'KIND':<24}" + "".join(f"  {s.value.upper():>9}" for s in states) + f"  {'TOTAL':>9}")
    rows = [*counted.by_kind.items(), ("(all kinds)", totals)]
    for kind, counts in rows:
        cells = "".join(f"  {counts.get(s, 0):>9}" for s in states)
        print(f"{kind:<24}{cells}  {sum(counts.values()):>9}")
    return 0
