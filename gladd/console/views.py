"""One view function per screen: what its template shows, read from the live objects.

Each returns the template's context (a dict); :mod:`.app` renders it. Payloads and
results are masked (:func:`gladd.admin.masking.mask_secrets`) before any page sees them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from gladd.admin.breakers import breaker_json
from gladd.admin.listing import unmatchable, workers_json
from gladd.admin.masking import mask_secrets
from gladd.admin.refusals import CONSOLE_PREFIX
from gladd.console import paging
from gladd.console.chart import throughput_svg
from gladd.console.deps import ConsoleDeps
from gladd.durations import format_duration
from gladd.executor import bulk
from gladd.executor.catalogue import kind_specs
from gladd.executor.flow import gates_of
from gladd.executor.service import task_json
from gladd.observe.health import Status
from gladd.store import Task, TaskState, timeline
from gladd.store.base import TaskFilter
from gladd.store.listing import BadListing

LISTED = 100
"""Tasks a list screen's page shows (keyset pages: :mod:`.paging`)."""
RUNNING_SHOWN = 20
STATES = [s.value for s in TaskState]


def pretty(value: Any) -> str:
    """JSON for a ``<pre>``: indented, keys in their order."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def task_row(task: Task) -> dict[str, Any]:
    """A task as the pages show it: :func:`task_json` with its payload and result masked."""
    shown = task_json(task)
    shown["payload"] = mask_secrets(task.payload)
    shown["result"] = mask_secrets(task.result)
    shown["last_error"] = task.errors[-1].message if task.errors else ""
    return shown


async def overview(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    now = deps.now()
    store = deps.tasks.store
    stats = await store.stats()  # kept by the store as tasks change: no scan
    totals = stats.totals
    # As many as run (the counts say): a scan for more than there are reads every row.
    running_now = min(totals[TaskState.RUNNING], RUNNING_SHOWN)
    running = (
        await store.list(state=TaskState.RUNNING, kind=None, limit=running_now)
        if running_now
        else []
    )
    lease = deps.tasks.policies().executor.lease
    checks = deps.board.report()["checks"]
    alerts = [
        {"key": key, "status": found[0]["status"], "output": found[0].get("output", "")}
        for key, found in checks.items()
        if found and found[0]["status"] != Status.PASS.value
    ]
    return {
        "counts": [(s, totals.get(TaskState(s), 0)) for s in STATES],
        "by_kind": [
            (kind, [(s.value, n) for s, n in states.items()], sum(states.values()))
            for kind, states in stats.by_kind.items()
        ],
        "nodes": [
            {**w, "stale": w["seen_ago"] > lease}
            for w in workers_json(await store.workers(), now=now)["workers"]
        ],
        "lease": format_duration(lease),
        "running": [task_row(t) for t in running],
        "alerts": alerts,
        "chart": throughput_svg(deps.throughput.minutes(now), now),
    }


async def _page(
    deps: ConsoleDeps, request: Request, path: str, *, states: Sequence[str] = ()
) -> dict[str, Any]:
    """A list screen's page: the filter and cursor of its URL, the store's keyset page,
    the links to the next and newer pages keeping the filter (``states``: a screen's own)."""
    query = {name: request.query_params.getlist(name) for name in request.query_params}
    if states:
        query["state"] = list(states)
    shown: dict[str, Any] = {
        "rows": [],
        "problem": "",
        "next": None,
        "newer": None,
        "newest": None,
        "filters": {},
        "chosen_states": query.get("state", []),
        "limit": LISTED,
        "done": request.query_params.get("done", "")[:200],
    }
    try:
        ask = paging.read_page(query, limit=LISTED, now=deps.now())
    except BadListing as exc:
        shown["problem"] = str(exc)
        return shown
    shown["filters"] = dict(ask.filters)
    shown["query"] = urlencode(ask.filters)
    if unmatchable(ask.where) or await _none_counted(deps, ask.where):
        return shown
    page = await deps.tasks.store.find(ask.where, limit=LISTED, before=ask.before)
    shown["rows"] = [task_row(t) for t in page.tasks]
    shown["next"] = paging.next_link(path, ask, page.next)
    shown["newer"] = paging.newer_link(path, ask)
    shown["newest"] = paging.link(path, ask.filters) if ask.cursor else None
    return shown


async def _none_counted(deps: ConsoleDeps, where: TaskFilter) -> bool:
    """Whether the counts the store keeps say no task has the filter's states and kind: a
    scan for a page of those would read every row to find none."""
    if not where.states and where.kind is None:
        return False
    return bulk.counted_by_stats(await deps.tasks.store.stats(), where) == 0


async def tasks(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    shown = await _page(deps, request, f"{CONSOLE_PREFIX}/tasks")
    filters = shown["filters"]
    return {
        **shown,
        "kind": filters.get("kind", ""),
        "error": filters.get("error", ""),
        "since": filters.get("since", ""),
        "until": filters.get("until", ""),
        "states": STATES,
        "kinds": deps.tasks.kinds.names(),
    }


def timeline_rows(task: Task) -> list[dict[str, Any]]:
    """A task's timeline as the detail page shows it: each entry's time, event and fields
    (masked like a payload: a handler's error could quote one), the ``dropped`` marker's
    count, and the time since the entry before."""
    rows = []
    before: datetime | None = None
    for entry in task.timeline:
        shown = mask_secrets(dict(entry.fields))
        rows.append(
            {
                "at": entry.at.isoformat(),
                "event": entry.event,
                "fields": list(shown.items()) if isinstance(shown, dict) else [],
                "dropped": entry.fields.get("count", "?")
                if entry.event == timeline.DROPPED
                else None,
                "after": _seconds(entry.at - before) if before is not None else "",
            }
        )
        before = entry.at
    return rows


def durations(task: Task) -> list[tuple[str, str]]:
    """How long the task waited for its first attempt, ran, and took in all (so far)."""
    shown = []
    if task.started_at is not None:
        shown.append(("waited", _seconds(task.started_at - task.created_at)))
        if task.finished_at is not None:
            shown.append(("ran", _seconds(task.finished_at - task.started_at)))
    if task.finished_at is not None:
        shown.append(("in all", _seconds(task.finished_at - task.created_at)))
    return shown


def _seconds(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds * 1000:.0f} ms" if abs(seconds) < 1 else format_duration(round(seconds, 1))


async def task_detail(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    task = await deps.tasks.get(int(request.path_params["task_id"]))
    shown = task_row(task)
    return {
        "task": shown,
        "payload": pretty(shown["payload"]),
        "result": pretty(shown["result"]),
        "waiting": await deps.tasks.waiting(task),
        "timeline": timeline_rows(task),
        "durations": durations(task),
    }


async def dead(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    shown = await _page(deps, request, f"{CONSOLE_PREFIX}/dead", states=[TaskState.DEAD.value])
    totals = (await deps.tasks.store.stats()).totals
    return {**shown, "dead_count": totals[TaskState.DEAD]}


async def bulk_preview(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    """How many tasks a bulk retry or cancel of a screen's filter would act on now, and the
    form that confirms that count (the action refuses it when more match by then)."""
    query = {name: request.query_params.getlist(name) for name in request.query_params}
    back = request.query_params.get("back", "")
    shown: dict[str, Any] = {
        "problem": "",
        "action": "",
        "count": 0,
        "filters": [],
        "back": back if back.startswith(CONSOLE_PREFIX + "/") else f"{CONSOLE_PREFIX}/tasks",
    }
    if deps.read_only:
        shown["problem"] = "the admin address is read-only: bulk actions are refused"
        return shown
    try:
        action = bulk.parse_action(request.query_params.get("action"))
        ask = paging.read_page(query, limit=LISTED, now=deps.now())
        count = await bulk.preview(deps.tasks.store, action, ask.where)
    except BadListing as exc:
        shown["problem"] = str(exc)
        return shown
    states = ",".join(v for k, v in ask.filters if k == "state")
    hidden = [(k, v) for k, v in ask.filters if k != "state"]
    hidden += [("state", states)] if states else []
    return {**shown, "action": action.value, "count": count, "filters": hidden}


async def kinds(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    policies = deps.tasks.policies()
    now = deps.now()
    pauses = await deps.tasks.pauses()
    gates = gates_of(policies)
    usage = await deps.tasks.store.limit_usage(gates, now=now)
    running: dict[str, int] = {}
    for (gate, _), count in usage.running.items():
        running[gate] = running.get(gate, 0) + count
    listed = []
    for spec in kind_specs(deps.tasks.kinds):
        binding = policies.tasks.get(spec.name)
        rules = binding.model_dump(mode="json", exclude_defaults=True) if binding else {}
        held = [p for p in pauses if spec.name in p["kinds"]]
        listed.append(
            {
                "name": spec.name,
                "plugin": spec.plugin,
                "description": spec.description,
                "rules": pretty(rules) if rules else "executor defaults",
                "pauses": held,
                "stored_pause": any(
                    p["source"] == "store" and p["target"] == f"kind:{spec.name}" for p in held
                ),
                "gates": [
                    {
                        "name": g.name,
                        "concurrency": g.concurrency,
                        "rate": g.rate,
                        "running": running.get(g.name, 0),
                    }
                    for g in gates
                    if spec.name in g.kinds
                ],
            }
        )
    return {"kinds": listed}


async def breakers(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    now = deps.now()
    found = deps.resilience.known_breakers()
    return {
        "breakers": [breaker_json(ident, b, now) for ident, b in sorted(found.items())],
        "isolated": sorted(deps.resilience.isolated()),
    }


async def schedules(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    listed = await deps.tasks.schedules()
    return {"schedules": listed, "pretty": pretty}


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff's lines, each with its class: add, del, hunk, file or same."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append((kind, line))
    return lines


async def policies(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    """The file served now, the generations before it (newest first, each with its diff
    as +/- lines) and the last rejection, as ``GET /policies/history`` has them."""
    history = deps.policy_history.to_json() if deps.policy_history is not None else None
    generations = history["generations"] if history else []
    return {
        "file": deps.policies_file(),
        "generations": [{**g, "diff_lines": diff_lines(g["diff"] or "")} for g in generations],
        "rejection": history["last_rejection"] if history else None,
    }
