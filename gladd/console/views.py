"""One view function per screen: what its template shows, read from the live objects.

Each returns the template's context (a dict); :mod:`.app` renders it. Payloads and
results are masked (:func:`gladd.admin.masking.mask_secrets`) before any page sees them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from gladd.admin.breakers import breaker_json
from gladd.admin.masking import mask_secrets
from gladd.console.chart import throughput_svg
from gladd.console.deps import ConsoleDeps
from gladd.executor.catalogue import kind_specs
from gladd.executor.flow import gates_of
from gladd.executor.service import task_json
from gladd.observe.health import Status
from gladd.store import Task, TaskState

LISTED = 100
"""Tasks a list screen shows (paging comes with the store's keyset cursor)."""
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
    counts = await store.counts()
    running = await store.list(state=TaskState.RUNNING, kind=None, limit=RUNNING_SHOWN)
    checks = deps.board.report()["checks"]
    alerts = [
        {"key": key, "status": found[0]["status"], "output": found[0].get("output", "")}
        for key, found in checks.items()
        if found and found[0]["status"] != Status.PASS.value
    ]
    return {
        # ROUND 2: counts by state and kind from GET /tasks/stats (h/stats), and the nodes
        # with their last heartbeat from Store.workers().
        "counts": [(s, counts.get(TaskState(s), 0)) for s in STATES],
        "running": [task_row(t) for t in running],
        "alerts": alerts,
        "chart": throughput_svg(deps.throughput.minutes(now), now),
    }


async def tasks(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    query = request.query_params
    state = query.get("state") or None
    kind = query.get("kind") or None
    problem = ""
    found: list[Task] = []
    if state is not None and state not in STATES:
        problem = f"unknown state {state!r} (states: {', '.join(STATES)})"
    else:
        # ROUND 2: keyset paging (a cursor, "more" link), error-text and time filters, and
        # bulk retry/cancel with a count preview (h/stats).
        found = await deps.tasks.list(state=state, kind=kind, limit=LISTED)
    return {
        "rows": [task_row(t) for t in found],
        "state": state or "",
        "kind": kind or "",
        "states": STATES,
        "kinds": deps.tasks.kinds.names(),
        "problem": problem,
        "limit": LISTED,
    }


async def task_detail(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    task = await deps.tasks.get(int(request.path_params["task_id"]))
    shown = task_row(task)
    return {
        "task": shown,
        "payload": pretty(shown["payload"]),
        "result": pretty(shown["result"]),
        "waiting": await deps.tasks.waiting(task),
        # ROUND 2: the task's timeline (h/timeline), and started_at beside created/finished.
    }


async def dead(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    found = await deps.tasks.list(state=TaskState.DEAD.value, limit=LISTED)
    # ROUND 2: "retry every dead task of this filter" with its count preview (h/stats).
    return {"rows": [task_row(t) for t in found], "limit": LISTED}


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


async def policies(deps: ConsoleDeps, request: Request) -> dict[str, Any]:
    """The file served now, the generations before it (newest first, each with its diff)
    and the last rejection, as ``GET /policies/history`` has them."""
    history = deps.policy_history.to_json() if deps.policy_history is not None else None
    return {
        "file": deps.policies_file(),
        "generations": history["generations"] if history else [],
        "rejection": history["last_rejection"] if history else None,
    }
