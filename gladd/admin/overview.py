"""The admin API's overview and bulk routes (issue 14): ``GET /tasks/stats`` (tasks per kind
and state, from the counts the store keeps: no scan), ``GET /workers`` (the worker rows and
their last heartbeat), ``POST /tasks/bulk/preview`` and ``POST /tasks/bulk`` (retry or
cancel every task matching a filter, :mod:`gladd.executor.bulk`).

Bulk bodies: ``{"action": "retry" | "cancel", "filter": {...}}`` for the preview, which
answers ``{"action", "count"}``; the same with ``"expect": N`` (the previewed count) to act,
which answers ``{"action", "count", "skipped", "ids"}`` (``ids``: up to 100 of those acted
on), or 409 when more than N tasks match now (nothing changed). The filter takes the keys of
``GET /tasks`` (but ``limit`` and ``cursor``); a bad one is a 400 naming ``filter.KEY``. Each
action is logged with what, which tasks and from where (:func:`gladd.admin.audit.log_action`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gladd.admin.audit import describe_ids, log_action, who
from gladd.admin.listing import filter_request, stats_json, workers_json
from gladd.admin.tasks import BODY_TIMEOUT, JSONBody, _guarded, _read_json, error
from gladd.executor import bulk
from gladd.executor.service import TaskService
from gladd.store.base import TaskFilter
from gladd.store.listing import BadListing

SHOWN_IDS = 100


async def _stats(_: Request, tasks: TaskService) -> JSONResponse:
    return JSONBody(stats_json(await tasks.store.stats()))


async def _workers(_: Request, tasks: TaskService) -> JSONResponse:
    return JSONBody(workers_json(await tasks.store.workers(), now=tasks.now()))


async def _bulk_request(
    request: Request, tasks: TaskService, timeout: float
) -> tuple[dict[str, Any], bulk.BulkAction, TaskFilter]:
    """The body, its action and its filter, narrowed to the states the action applies to."""
    body = await _bulk_body(request, timeout)
    action = bulk.parse_action(body.get("action"))
    where = bulk.narrowed(action, filter_request(body.get("filter"), now=tasks.now()))
    return body, action, where


async def _bulk_body(request: Request, timeout: float) -> dict[str, Any]:
    body = await _read_json(request, timeout)
    if not isinstance(body, dict):
        raise BadListing("body", 'must be an object: {"action": "retry", "filter": {...}}')
    unknown = sorted(set(body) - {"action", "filter", "expect"})
    if unknown:
        raise BadListing(unknown[0], "not a field of a bulk request (action, filter, expect)")
    return body


def _preview(timeout: float) -> Callable[[Request, TaskService], Any]:
    async def preview(request: Request, tasks: TaskService) -> JSONResponse:
        _, action, where = await _bulk_request(request, tasks, timeout)
        count = await bulk.preview(tasks.store, action, where)
        return JSONBody({"action": action.value, "count": count})

    return preview


def _act(timeout: float) -> Callable[[Request, TaskService], Any]:
    async def act(request: Request, tasks: TaskService) -> JSONResponse:
        body, action, where = await _bulk_request(request, tasks, timeout)
        expect = body.get("expect")
        if isinstance(expect, bool) or not isinstance(expect, int) or expect < 0:
            raise BadListing(
                "expect",
                "required: the count POST /tasks/bulk/preview gave, a whole number "
                f"(got {expect!r})",
            )
        try:
            done = await bulk.run(
                tasks.store, action, where, expect=expect, now=tasks.now(), by=who(request)
            )
        except bulk.BulkCountChanged as exc:
            return error(409, str(exc))
        log_action(request, action.value, describe_ids(done.changed))
        return JSONBody(
            {
                "action": action.value,
                "count": len(done.changed),
                "skipped": done.skipped,
                "ids": done.changed[:SHOWN_IDS],
            }
        )

    return act


def overview_routes(
    service: TaskService,
    *,
    store_open: Callable[[], bool] = lambda: True,
    body_timeout: float = BODY_TIMEOUT,
) -> list[Route]:
    """Listed before :func:`~gladd.admin.tasks.task_routes`: ``/tasks/stats`` is not a task id."""
    return [
        Route("/tasks/stats", _guarded(_stats, service, store_open), methods=["GET"]),
        Route("/workers", _guarded(_workers, service, store_open), methods=["GET"]),
        Route(
            "/tasks/bulk/preview",
            _guarded(_preview(body_timeout), service, store_open),
            methods=["POST"],
        ),
        Route("/tasks/bulk", _guarded(_act(body_timeout), service, store_open), methods=["POST"]),
    ]
