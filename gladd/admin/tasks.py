"""The admin API's task routes: enqueue, list, show, wait, cancel, retry; schedules; pauses;
kinds. What a listing takes and answers is in :mod:`gladd.admin.listing`; the stats, workers
and bulk routes are in :mod:`gladd.admin.overview`.

Every route answers JSON; errors are ``{"error": "..."}`` with a status that fits:
400 malformed request (not JSON, nested too deeply, wrong field types, a query parameter
out of range), 401 missing or wrong token, 404 no such task (or an id that cannot be one),
408 body not received within :data:`BODY_TIMEOUT` (or a wait's timeout passed first), 409
the task's state forbids the cancel or retry, 413 body too large, 415 a body that is not
declared as JSON, 422 refused task (unknown kind, invalid payload, nothing to run it under
the policies), 503 store unavailable.

``POST /tasks`` may carry ``Gladd-Store-SHA256``, the SHA-256 (hex) of the store URL the
caller means (``gladd tasks enqueue`` sends it, so as not to send the URL and its password):
a daemon serving another store answers 421 Misdirected Request and stores nothing, and the
caller enqueues into its store directly.

``POST /tasks`` with an array body is a batch, stored in one transaction or not at all. A
batch's body may be up to :data:`~gladd.admin.fast_enqueue.MAX_BATCH_BODY` (an object's,
:data:`~gladd.admin.fast_enqueue.MAX_BODY`), its items
up to :data:`~gladd.executor.service.MAX_BATCH` (more: 413). Every problem of its items —
wrong field types as much as an unknown kind — is a 422 whose ``items`` lists each refused
item's ``index``, ``field`` and ``message``, every item checked (an item whose fields have
the wrong names or types is listed for those, its kind and payload unchecked).

``POST /tasks`` is answered by :class:`~gladd.admin.fast_enqueue.FastEnqueue` in front of
Starlette (its route here runs the same code, :func:`~gladd.admin.fast_enqueue.enqueue_answer`).

What the store cannot keep is refused by :class:`TaskService` before it is stored; what a
store holds already is served back even when it is not valid Unicode (see :class:`JSONBody`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from loguru import logger
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gladd.admin.audit import who
from gladd.admin.fast_enqueue import (
    NOT_OPEN,
    PROBLEMS,
    Answer,
    BadRequest,
    enqueue_answer,
    field_problems,
    problem_answer,
    read_json,
    render_json,
)
from gladd.admin.listing import page_json, page_request, unmatchable
from gladd.duration_fields import AnyDuration
from gladd.errors import StoreError, UnknownTask, WaitTimeout
from gladd.executor.catalogue import kind_specs
from gladd.executor.service import MAX_REASON, TaskService, pause_json, task_json
from gladd.executor.waiting import wait_seconds
from gladd.store import KindSpec

BODY_TIMEOUT = 30.0
"""Seconds to receive a request body once its headers are in (the server bounds those)."""
_DIGITS = re.compile(r"[0-9]{1,30}")
_TASK_ID = re.compile(r"-?[0-9]{1,30}")
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
DEFAULT_WAIT = 30.0
"""Seconds ``GET /tasks/{id}/wait`` waits without a ``timeout``."""
MAX_WAIT = 60.0
"""The longest ``timeout`` of ``GET /tasks/{id}/wait``, in seconds: shorter than proxies'
idle timeouts, and a request that long holds no connection of the store's pool."""


class JSONBody(JSONResponse):
    """JSON that can always be sent: text a store holds that is not valid Unicode (a lone
    surrogate from before such input was refused) goes out ``\\u``-escaped, as JSON allows,
    rather than failing every read of it."""

    def render(self, content: Any) -> bytes:
        return render_json(content)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONBody({"error": message}, status_code=status, headers=headers)


def _response(answer: Answer) -> JSONResponse:
    headers = None if answer.headers is None else dict(answer.headers)
    return JSONBody(answer.body, status_code=answer.status, headers=headers)


Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def _guarded(
    handler: Callable[[Request, TaskService], Awaitable[JSONResponse]],
    tasks: TaskService,
    store_open: Callable[[], bool],
) -> Endpoint:
    async def endpoint(request: Request) -> JSONResponse:
        if not store_open():
            return _response(NOT_OPEN)
        try:
            return await handler(request, tasks)
        except PROBLEMS as exc:  # the answers POST /tasks's fast path gives too
            answer = problem_answer(exc)
            assert answer is not None  # PROBLEMS are what it answers
            return _response(answer)

    return endpoint


async def _read_json(request: Request, timeout: float) -> Any:
    """An object body's JSON (at most MAX_BODY bytes), as ``POST /tasks`` reads one."""
    return await read_json(request.headers, request.stream(), timeout, batch=False)


def _kinds_endpoint(tasks: TaskService, store_open: Callable[[], bool]) -> Endpoint:
    """``GET /kinds``: the kinds this node serves, with their payload JSON Schemas, and the
    catalogue every node published in the store (what clients validate against; null while
    the store is not open)."""

    async def kinds(request: Request) -> JSONResponse:
        served = [_spec_json(spec) for spec in kind_specs(tasks.kinds)]
        catalogue = None
        if store_open():
            try:
                rows = await tasks.store.kinds_catalogue()
            except StoreError as exc:
                logger.debug("GET /kinds: the catalogue could not be read: {}", exc)
            else:
                catalogue = [
                    {
                        **_spec_json(r.spec),
                        "node": r.node,
                        "published_at": r.published_at.isoformat(),
                    }
                    for r in rows
                ]
        return JSONBody({"kinds": served, "catalogue": catalogue})

    return kinds


def _spec_json(spec: KindSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "plugin": spec.plugin,
        "description": spec.description,
        "payload_schema": spec.payload_schema,
        "services": list(spec.services),
    }


async def _schedules(request: Request, tasks: TaskService) -> JSONResponse:
    return JSONBody({"schedules": await tasks.schedules()})


async def _run_schedule(request: Request, tasks: TaskService) -> JSONResponse:
    enqueued = await tasks.run_schedule(request.path_params["name"])
    return JSONBody({"id": enqueued.id, "created": enqueued.created}, status_code=201)


def _task_id(request: Request) -> int:
    raw: str = request.path_params["task_id"]
    if not _TASK_ID.fullmatch(raw):
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise UnknownTask(f"no task with id {shown!r}: task ids are whole numbers")
    return int(raw)


async def _show(request: Request, tasks: TaskService) -> JSONResponse:
    task = await tasks.get(_task_id(request))
    waiting = await tasks.waiting(task)
    return JSONBody({**task_json(task, timeline=True), "waiting": waiting})


async def _wait(request: Request, tasks: TaskService) -> JSONResponse:
    """The task once finished (200), or as it stands after ``timeout`` (408, with the
    task): seconds or duration text, :data:`DEFAULT_WAIT` by default, at most
    :data:`MAX_WAIT` (a longer wait is a loop of these, on a connection kept alive)."""
    task_id = _task_id(request)
    text = request.query_params.get("timeout")
    seconds = DEFAULT_WAIT if text is None else _wait_seconds(text)
    try:
        task = await tasks.wait(task_id, timeout=seconds)
    except WaitTimeout as exc:
        return JSONBody({"error": str(exc), "task": task_json(exc.task)}, status_code=408)
    return JSONBody(task_json(task))


def _wait_seconds(text: str) -> float:
    try:
        seconds = wait_seconds(float(text) if _NUMBER.fullmatch(text) else text)
    except ValueError as exc:
        raise BadRequest(400, str(exc)) from None
    assert seconds is not None  # given a value, never None
    if seconds > MAX_WAIT:
        raise BadRequest(
            400,
            f"timeout must be at most {MAX_WAIT:g}s (got {text!r}): wait again when it "
            "answers 408 for longer",
        )
    return seconds


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    target: StrictStr = Field(min_length=1, max_length=300)
    lasting: AnyDuration | None = Field(None, alias="for")
    until: AwareDatetime | None = None
    reason: StrictStr = Field("", max_length=MAX_REASON)


async def _pauses(request: Request, tasks: TaskService, body_timeout: float) -> JSONResponse:
    if request.method == "GET":
        return JSONBody({"pauses": await tasks.pauses()})
    raw = await _read_json(request, body_timeout)
    try:
        body = PauseRequest.model_validate(raw)
    except ValidationError as exc:
        return error(400, field_problems(exc))
    client = request.client.host if request.client else "unknown"
    pause = await tasks.pause(
        body.target, seconds=body.lasting, until=body.until, reason=body.reason, by=f"api:{client}"
    )
    lasting = f"until {pause.until.isoformat()}" if pause.until else "until resumed"
    logger.info("{} paused by {} {}: {}", pause.target, pause.by, lasting, pause.reason or "-")
    shown = next(p for p in await tasks.pauses() if p["target"] == pause.target)
    return JSONBody(shown, status_code=201)


async def _resume(request: Request, tasks: TaskService) -> JSONResponse:
    ended = await tasks.resume(request.path_params["target"])
    if ended is not None:
        client = request.client.host if request.client else "unknown"
        logger.info("{} resumed by api:{} (paused by {})", ended.target, client, ended.by)
    return JSONBody(
        {"resumed": ended is not None, "pause": pause_json(ended, []) if ended else None}
    )


async def _list(request: Request, tasks: TaskService) -> JSONResponse:
    query = {name: request.query_params.getlist(name) for name in request.query_params}
    where, limit, before = page_request(query, now=tasks.now())
    if unmatchable(where):
        return JSONBody({"tasks": [], "next": None})
    return JSONBody(page_json(await tasks.store.find(where, limit=limit, before=before)))


async def _tasks(
    request: Request, tasks: TaskService, *, body_timeout: float, store: str | None
) -> JSONResponse:
    # One route for both methods, so a 405 on /tasks names every method it allows.
    if request.method == "POST":  # FastEnqueue answers it before Starlette, as this would
        answer = await enqueue_answer(
            request.headers, request.stream(), tasks, body_timeout=body_timeout, store=store
        )
        return _response(answer)
    return await _list(request, tasks)


async def _cancel(request: Request, tasks: TaskService) -> JSONResponse:
    return JSONBody(task_json(await tasks.cancel(_task_id(request), by=who(request))))


async def _retry(request: Request, tasks: TaskService) -> JSONResponse:
    return JSONBody(task_json(await tasks.retry(_task_id(request), by=who(request))))


def task_routes(
    service: TaskService,
    *,
    store_open: Callable[[], bool] = lambda: True,
    body_timeout: float = BODY_TIMEOUT,
    store_sha256: str | None = None,
) -> list[Route]:
    """The ``/tasks`` routes on ``service``; 503 while ``store_open()`` says it is not.
    ``store_sha256`` (:func:`store_digest` of the store's URL) makes an enqueue meant for
    another store a 421."""
    tasks = partial(_tasks, body_timeout=body_timeout, store=store_sha256)
    pauses = partial(_pauses, body_timeout=body_timeout)
    return [
        Route("/pauses", _guarded(pauses, service, store_open), methods=["GET", "POST"]),
        Route("/pauses/{target:path}", _guarded(_resume, service, store_open), methods=["DELETE"]),
        Route("/tasks", _guarded(tasks, service, store_open), methods=["GET", "POST"]),
        Route("/tasks/{task_id}", _guarded(_show, service, store_open), methods=["GET"]),
        Route("/tasks/{task_id}/wait", _guarded(_wait, service, store_open), methods=["GET"]),
        Route("/tasks/{task_id}/cancel", _guarded(_cancel, service, store_open), methods=["POST"]),
        Route("/tasks/{task_id}/retry", _guarded(_retry, service, store_open), methods=["POST"]),
        Route("/schedules", _guarded(_schedules, service, store_open), methods=["GET"]),
        Route("/kinds", _kinds_endpoint(service, store_open), methods=["GET"]),
        Route(
            "/schedules/{name}/run",
            _guarded(_run_schedule, service, store_open),
            methods=["POST"],
        ),
    ]
