"""``gladd tasks retry --all`` and ``gladd tasks cancel --all`` (issue 14): every task
matching the filter flags, after showing how many and asking (``--yes`` does not ask).
The rules, the chunks and why a grown count is refused: :mod:`gladd.executor.bulk`."""

from __future__ import annotations

import argparse
import sys

import anyio

from gladd.cli.exits import EXIT_CONFLICT, EXIT_USAGE, fail
from gladd.cli.listing import filter_from
from gladd.executor import bulk
from gladd.executor.service import TaskService
from gladd.store.listing import BadListing


async def act_on_all(args: argparse.Namespace, service: TaskService) -> int:
    action = bulk.BulkAction(args.verb)
    try:
        where = bulk.narrowed(action, filter_from(args, service))
    except BadListing as exc:
        flag = exc.param.removeprefix("filter.")
        fail(f"--{flag}: {str(exc).split(': ', 1)[1]}")
        return EXIT_USAGE
    count = await bulk.preview(service.store, action, where)
    states = " or ".join(sorted(s.value for s in where.states))
    of_kind = "" if where.kind is None else f" of kind {where.kind}"
    print(f"{count} {states} task(s){of_kind} match")
    if count == 0:
        return 0
    if not args.yes and not await _confirmed(f"{action.value} {count} task(s)? [y/N] "):
        fail("nothing changed (answer y, or pass --yes)")
        return EXIT_CONFLICT
    done = await bulk.run(service.store, action, where, expect=count, now=service.now(), by="cli")
    skipped = f"; {done.skipped} skipped (no longer {states})" if done.skipped else ""
    verb = "retried" if action is bulk.BulkAction.RETRY else "cancelled"
    print(f"{verb} {len(done.changed)} task(s){skipped}")
    return 0


async def _confirmed(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    answer = await anyio.to_thread.run_sync(sys.stdin.readline)
    return answer.strip().lower() in ("y", "yes")
