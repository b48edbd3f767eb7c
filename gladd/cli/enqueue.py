"""``gladd tasks enqueue``: through the running daemon when it serves the same store, else
straight into the store.

The direct way (:mod:`gladd.cli.tasks`) opens the store and loads the policies and every
plugin's kinds to validate the task: most of a second of start-up. When a daemon answers
at the admin address, the task goes to it as ``POST /tasks`` instead, and the daemon
validates and stores it (its enqueues share a transaction, issue 15). The request names the
store the settings give by a hash (``Gladd-Store-SHA256``, never the URL with its password);
a daemon serving another store answers 421 and the enqueue goes direct. So does one that
cannot be reached quickly (:data:`CONNECT_TIMEOUT`), refuses the token, or answers with what
the direct way words better (a 400, a 413, a 5xx): the output and exit codes are the same
either way. With ``GLADD_OTEL`` on, the enqueue goes direct too, so its span is the CLI's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from typing import Any

from gladd.cli.admin_http import (
    Answer,
    BadURL,
    NotConnected,
    NotSent,
    admin_url,
    request,
)
from gladd.cli.enqueue_args import BatchFile, prepare_enqueue, trace_carrier
from gladd.cli.exits import EXIT_DATAERR, fail
from gladd.cli.flags import light_settings_from
from gladd.durations import parse_duration
from gladd.errors import StartupError
from gladd.light_settings import SOURCE_HEADER, STORE_HEADER, LightSettings, store_digest

CONNECT_TIMEOUT = 0.5
"""Seconds to reach the daemon before enqueueing directly (it is on loopback, usually)."""
TIMEOUT = 30.0
"""Seconds for the daemon's answer once the request is sent; past them the task may or may
not be stored, so the command says so (69) rather than enqueue it a second time."""


def run_enqueue(args: argparse.Namespace) -> int:
    """The ``tasks enqueue`` handler."""
    settings = light_settings_from(args)  # first, as every command: a settings error wins
    if (code := prepare_enqueue(args)) is not None:
        return code
    if not settings.otel:
        body = _request_body(args)
        if body is not None and (code := _through_daemon(args, settings, body)) is not None:
            return code
    from gladd.cli.flags import settings_from  # noqa: PLC0415 - the slow way, on demand
    from gladd.cli.tasks import VERBS, run_verb  # noqa: PLC0415

    return run_verb(args, settings_from(args), VERBS)


def _request_body(args: argparse.Namespace) -> bytes | None:
    """The ``POST /tasks`` body, or None when the arguments are wrong (the direct way says
    how, in its order: the store is checked first)."""
    if args.from_file is not None:
        return json.dumps(args.batch.items).encode()
    try:
        payload = json.loads("{}" if args.payload is None else args.payload)
        delay = parse_duration("0s" if args.delay is None else args.delay)
        item = {"kind": args.kind, "payload": payload, "delay": delay}
        if args.priority is not None:
            item["priority"] = args.priority
        if args.unique_key is not None:
            item["unique_key"] = args.unique_key
        return json.dumps(item).encode()
    except (ValueError, RecursionError):
        return None


def _through_daemon(args: argparse.Namespace, settings: LightSettings, body: bytes) -> int | None:
    """The exit code of the enqueue by the daemon, or None to enqueue directly."""
    base = admin_url(settings.admin_host, settings.admin_port)
    headers = {
        STORE_HEADER: store_digest(settings.store_url),
        SOURCE_HEADER: "cli",
        **trace_carrier(),
    }
    try:
        answer = request(
            base,
            "POST",
            "/tasks",
            token=settings.admin_token,
            body=body,
            headers=headers,
            timeout=TIMEOUT,
            connect_timeout=CONNECT_TIMEOUT,
        )
    except (NotConnected, NotSent, BadURL):
        return None
    except (OSError, http.client.HTTPException) as exc:
        # Sent, and no answer: the daemon may have stored the task, so it is not sent again.
        why = f"no answer within {TIMEOUT:g}s" if isinstance(exc, TimeoutError) else repr(exc)
        raise StartupError(
            f"the daemon at {base} took the task but gave no answer ({why}): it may or may "
            "not be stored (`gladd tasks list` shows); is the daemon hung or overloaded?"
        ) from None
    return _shown(args, answer)


def _shown(args: argparse.Namespace, answer: Answer) -> int | None:
    """What the command prints for the daemon's ``answer``, and its exit code; None for an
    answer the direct way words better (every such answer refuses the whole request, so
    nothing was stored)."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status in (200, 201):
        stored = _stored(args, body)
        if stored is None:
            raise StartupError(
                f"the daemon answered HTTP {answer.status} but not with the task ids: "
                "the task may be stored (`gladd tasks list` shows); is that gladd?"
            )
        return _print_stored(args, stored)
    if answer.status == 422 and isinstance(body, dict):
        if args.from_file is not None and isinstance(body.get("items"), list):
            return _batch_refused(args.batch, body["items"])
        if args.from_file is None and isinstance(body.get("error"), str):
            fail(body["error"])
            return EXIT_DATAERR
    return None


def _stored(args: argparse.Namespace, body: Any) -> list[tuple[int, bool]] | None:
    """``(id, created)`` of each task in a 2xx answer, in item order; None for another body."""
    if not isinstance(body, dict):
        return None
    tasks = body.get("tasks") if args.from_file is not None else [body]
    count = len(args.batch.items) if args.from_file is not None else 1
    if not isinstance(tasks, list) or len(tasks) != count:
        return None
    pairs = [
        (t["id"], t["created"])
        for t in tasks
        if isinstance(t, dict)
        and isinstance(t.get("id"), int)
        and isinstance(t.get("created"), bool)
    ]
    return pairs if len(pairs) == count else None


def _print_stored(args: argparse.Namespace, stored: list[tuple[int, bool]]) -> int:
    """The ids, one a line; each task that was there already (its unique key) on stderr."""
    if args.from_file is None:
        ((task_id, created),) = stored
        print(task_id)
        if not created:
            print(
                f"gladd: task {task_id} with unique key {args.unique_key!r} already exists",
                file=sys.stderr,
            )
        return 0
    batch: BatchFile = args.batch
    for line, item, (task_id, created) in zip(batch.lines, batch.items, stored, strict=True):
        print(task_id)
        if not created:
            print(
                f"{batch.name}:{line}: task {task_id} with unique key "
                f"{item.get('unique_key')!r} already exists",
                file=sys.stderr,
            )
    return 0


def _batch_refused(batch: BatchFile, problems: list[dict[str, Any]]) -> int:
    """Each refused line as ``FILE:LINE: field: message``, as the direct way prints them."""
    for problem in problems:
        where = f"{batch.name}:{batch.lines[problem['index']]}"
        field = f" {problem['field']}:" if problem.get("field") else ""
        print(f"{where}:{field} {problem['message']}", file=sys.stderr)
    print(f"gladd: nothing stored from {batch.name}", file=sys.stderr)
    return EXIT_DATAERR
