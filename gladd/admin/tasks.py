"""The admin API's task routes: enqueue, list, show, wait, cancel, retry; schedules; pauses;
kinds.

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
batch's body may be up to :data:`MAX_BATCH_BODY` (an object's, :data:`MAX_BODY`), its items
up to :data:`~gladd.executor.service.MAX_BATCH` (more: 413). Every problem of its items —
wrong field types as much as an unknown kind — is a 422 whose ``items`` lists each refused
item's ``index``, ``field`` and ``message``, every item checked (an item whose fields have
the wrong names or types is listed for those, its kind and payload unchecked).

What the store cannot keep is refused by :class:`TaskService` before it is stored; what a
store holds already is served back even when it is not valid Unicode (see :class:`JSONBody`).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
from loguru import logger
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gladd.admin.audit import who
from gladd.duration_fields import AnyDuration
from gladd.errors import (
    BatchRejected,
    BatchTooLarge,
    ItemProblem,
    StoreError,
    StoreUnavailable,
    TaskRejected,
    TaskStateConflict,
    UnknownTask,
    WaitTimeout,
)
from gladd.executor.catalogue import kind_specs
from gladd.executor.service import (
    MAX_BATCH,
    MAX_LIST,
    MAX_REASON,
    TaskService,
    pause_json,
    task_json,
)
from gladd.executor.waiting import wait_seconds
from gladd.light_settings import SOURCE_HEADER, STORE_HEADER
from gladd.store import KindSpec
from gladd.store.rules import MAX_DEPTH

MAX_BODY = 1024 * 1024
"""Bytes of a body, but a batch's."""
MAX_BATCH_BODY = 16 * 1024 * 1024
"""Bytes of a ``POST /tasks`` array body: a batch of up to MAX_BATCH tasks."""
BODY_TIMEOUT = 30.0
"""Seconds to receive a request body once its headers are in (the server bounds those)."""
TRACE_HEADERS = ("traceparent", "tracestate")
_DIGITS = re.compile(r"[0-9]{1,30}")
_TASK_ID = re.compile(r"-?[0-9]{1,30}")
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
DEFAULT_WAIT = 30.0
"""Seconds ``GET /tasks/{id}/wait`` waits without a ``timeout``."""
MAX_WAIT = 60.0
"""The longest ``timeout`` of ``GET /tasks/{id}/wait``, in seconds: shorter than proxies'
idle timeouts, and a request that long holds no connection of the store's pool."""


class EnqueueRequest(BaseModel):
    # Strict: `"priority": true` or `"priority": "5"` is a mistake to report, not coerce.
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: StrictStr = Field(min_length=1, max_length=200)
    payload: Any = None
    delay: AnyDuration = 0.0
    priority: StrictInt | None = None
    unique_key: StrictStr | None = Field(None, max_length=500)
    timeout: AnyDuration | None = None


class JSONBody(JSONResponse):
    """JSON that can always be sent: text a store holds that is not valid Unicode (a lone
    surrogate from before such input was refused) goes out ``\\u``-escaped, as JSON allows,
    rather than failing every read of it."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
            return text.encode("ascii")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONBody({"error": message}, status_code=status, headers=headers)


Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def _guarded(
    handler: Callable[[Request, TaskService], Awaitable[JSONResponse]],
    tasks: TaskService,
    store_open: Callable[[], bool],
) -> Endpoint:
    async def endpoint(request: Request) -> JSONResponse:
        if not store_open():
            return error(503, "the task store is not open yet (database unavailable?)")
        try:
            return await handler(request, tasks)
        except _BadRequest as exc:
            # A body left unread (too large, too slow, gone) ends the connection with it.
            close = {"Connection": "close"} if exc.unread_body else None
            return error(exc.status, str(exc), headers=close)
        except UnknownTask as exc:
            return error(404, str(exc))
        except TaskStateConflict as exc:
            return error(409, str(exc))
        except BatchTooLarge as exc:
            return error(413, str(exc))
        except BatchRejected as exc:
            return JSONBody(
                {"error": str(exc), "items": [_problem_json(p) for p in exc.problems]},
                status_code=422,
            )
        except TaskRejected as exc:
            return error(422, str(exc))
        except StoreUnavailable as exc:
            return error(503, str(exc))
        except StoreError as exc:
            return error(500, str(exc))

    return endpoint


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _read_json(request: Request, timeout: float, *, batch: bool = False) -> Any:
    """The body's JSON, of at most MAX_BODY bytes; with ``batch``, an array body (a batch
    enqueue) may have up to MAX_BATCH_BODY: which limit holds is known from the body's
    first byte that is not white space, so no object is read past MAX_BODY either."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and not media.endswith("json"):  # application/json, application/*+json
        raise _BadRequest(
            415, f"the body must be JSON: send Content-Type: application/json (got {media!r})"
        )
    declared = request.headers.get("content-length", "")
    most = MAX_BATCH_BODY if batch else MAX_BODY
    if _DIGITS.fullmatch(declared) and int(declared) > most:
        raise _BadRequest(413, _too_large(most), unread_body=True)
    body = bytearray()  # appended to in place: a 16 MiB batch in small chunks stays linear
    limit: int | None = None if batch else MAX_BODY  # None: no byte but white space yet
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                body += chunk
                if limit is None and (start := chunk.lstrip()[:1]):
                    limit = MAX_BATCH_BODY if start == b"[" else MAX_BODY
                if len(body) > (MAX_BODY if limit is None else limit):
                    raise _BadRequest(413, _too_large(limit or MAX_BODY), unread_body=True)
    except TimeoutError:
        message = f"request body not received within {timeout:g}s"
        raise _BadRequest(408, message, unread_body=True) from None
    except ClientDisconnect:
        message = "the client went away before sending the whole body"
        raise _BadRequest(400, message, unread_body=True) from None
    try:
        return json.loads(bytes(body) or b"null", parse_constant=_refuse_constant)
    except RecursionError:
        raise _BadRequest(
            400,
            f"body is nested too deeply to decode: a payload may nest at most {MAX_DEPTH} "
            "levels of arrays and objects",
        ) from None
    except ValueError as exc:  # also UnicodeDecodeError, and integers of over 4300 digits
        raise _BadRequest(400, f"body is not valid JSON: {exc}") from None


def _too_large(limit: int) -> str:
    if limit == MAX_BATCH_BODY:
        return f"request body over {limit} bytes (the limit of a batch, an array of tasks)"
    return f"request body over {limit} bytes"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, *, unread_body: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unread_body = unread_body


def _field_problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


async def _enqueue(
    request: Request, tasks: TaskService, body_timeout: float, store: str | None
) -> JSONResponse:
    meant = request.headers.get(STORE_HEADER)
    if meant is not None and store is not None and not hmac.compare_digest(meant, store):
        # Read before the body: a misdirected batch is not received at all.
        return error(
            421,
            "this daemon serves another store than the one named by Gladd-Store-SHA256: "
            "enqueue into that store directly",
            headers={"Connection": "close"},
        )
    raw = await _read_json(request, body_timeout, batch=True)
    # W3C Trace Context: the enqueue continues the caller's trace (when traces are on).
    trace = {name: value for name in TRACE_HEADERS if (value := request.headers.get(name))}
    # Who created it, for its timeline: the CLI says so in a header; anyone else is HTTP.
    source = "cli" if request.headers.get(SOURCE_HEADER) == "cli" else "http"
    if isinstance(raw, list):
        return await _enqueue_many(raw, tasks, trace or None, source)
    try:
        body = EnqueueRequest.model_validate(raw)
    except ValidationError as exc:
        return error(400, _field_problems(exc))
    enqueued = await tasks.enqueue(
        body.kind,
        body.payload,
        delay=body.delay,
        priority=body.priority,
        unique_key=body.unique_key,
        timeout=body.timeout,
        trace=trace or None,
        source=source,
    )
    status = 201 if enqueued.created else 200
    return JSONBody({"id": enqueued.id, "created": enqueued.created}, status_code=status)


async def _enqueue_many(
    raw: list[Any], tasks: TaskService, trace: dict[str, str] | None, source: str
) -> JSONResponse:
    """A batch: 201 when any task was created, 200 when every item matched an unfinished
    task's unique key; ``tasks`` in item order."""
    items, refused = parse_items(raw)
    enqueued = await tasks.enqueue_many(items, trace=trace, refused=refused, source=source)
    created = any(e.created for e in enqueued)
    shown = [{"id": e.id, "created": e.created} for e in enqueued]
    return JSONBody({"tasks": shown}, status_code=201 if created or not enqueued else 200)


def parse_items(raw: list[Any]) -> tuple[list[dict[str, Any]], list[ItemProblem]]:
    """A batch's items as :meth:`TaskService.enqueue_many` takes them, each read as a
    ``POST /tasks`` object is (durations as text), and the problems of every item whose
    fields have the wrong names or types (its place in the items holds an empty dict);
    raises :class:`BatchTooLarge` over MAX_BATCH items."""
    if len(raw) > MAX_BATCH:
        raise BatchTooLarge(len(raw), MAX_BATCH)
    items: list[dict[str, Any]] = []
    problems: list[ItemProblem] = []
    for index, item in enumerate(raw):
        try:
            fields = EnqueueRequest.model_validate(item)
        except ValidationError as exc:
            items.append({})
            problems += [
                ItemProblem(
                    index=index,
                    field=".".join(str(p) for p in e["loc"]),
                    message=e["msg"] if isinstance(item, dict) else "must be an object",
                )
                for e in exc.errors()
            ]
        else:
            items.append({name: getattr(fields, name) for name in fields.model_fields_set})
    return items, problems


def _problem_json(problem: ItemProblem) -> dict[str, Any]:
    return {"index": problem.index, "field": problem.field, "message": problem.message}


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
        raise _BadRequest(400, str(exc)) from None
    assert seconds is not None  # given a value, never None
    if seconds > MAX_WAIT:
        raise _BadRequest(
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
        return error(400, _field_problems(exc))
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
    query = request.query_params
    limit_text = query.get("limit", "100")
    if not _DIGITS.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIST:
        shown = limit_text if len(limit_text) <= 40 else limit_text[:40] + "…"
        raise _BadRequest(400, f"limit must be a whole number from 1 to {MAX_LIST} (got {shown!r})")
    found = await tasks.list(
        state=query.get("state"), kind=query.get("kind") or None, limit=int(limit_text)
    )
    return JSONBody({"tasks": [task_json(t) for t in found]})


async def _tasks(
    request: Request, tasks: TaskService, *, body_timeout: float, store: str | None
) -> JSONResponse:
    # One route for both methods, so a 405 on /tasks names every method it allows.
    if request.method == "POST":
        return await _enqueue(request, tasks, body_timeout, store)
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
