"""``POST /tasks`` (one task or a batch) as a plain ASGI layer in front of Starlette.

The enqueue is the admin API's hot path: with 20 keep-alive clients on 2 cores, Starlette's
middleware stack, routing and ``Request``/``Response`` objects were about a third of the
daemon's time per request (bench/bench_producer.py, py-spy). :class:`FastEnqueue` answers
``POST /tasks`` itself, from the ASGI scope and messages, and hands every other request to
the app behind it. What it answers is what the Starlette route answers, byte for byte in the
body, because both run the same code: :func:`enqueue_answer` (reading the body, the 421 of
another store, the 400/413/415/408 of a bad body, the 422 of refused tasks) and
:func:`problem_answer` (the status of each error) live here, and the Starlette route in
:mod:`gladd.admin.tasks` calls them too.

It sits inside the token check (see :func:`gladd.admin.app.create_app`): an enqueue still
needs the admin token when one is set.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

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
)
from gladd.executor.service import MAX_BATCH, TaskService
from gladd.light_settings import SOURCE_HEADER, STORE_HEADER
from gladd.store.listing import BadListing
from gladd.store.rules import MAX_DEPTH

MAX_BODY = 1024 * 1024
"""Bytes of a body, but a batch's."""
MAX_BATCH_BODY = 16 * 1024 * 1024
"""Bytes of a ``POST /tasks`` array body: a batch of up to MAX_BATCH tasks."""
TRACE_HEADERS = ("traceparent", "tracestate")
_DIGITS = re.compile(r"[0-9]{1,30}")
_STORE_HEADER = STORE_HEADER.lower()
_SOURCE_HEADER = SOURCE_HEADER.lower()


class EnqueueRequest(BaseModel):
    # Strict: `"priority": true` or `"priority": "5"` is a mistake to report, not coerce.
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: StrictStr = Field(min_length=1, max_length=200)
    payload: Any = None
    delay: AnyDuration = 0.0
    priority: StrictInt | None = None
    unique_key: StrictStr | None = Field(None, max_length=500)
    timeout: AnyDuration | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A JSON answer: its status, the value of its body, its extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] | None = None


def render_json(content: Any) -> bytes:
    """The body of a JSON answer, as Starlette's ``JSONResponse`` renders it; text a store
    holds that is not valid Unicode (a lone surrogate from before such input was refused)
    goes out ``\\u``-escaped, as JSON allows, rather than failing every read of it."""
    try:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text.encode("ascii")


def error_answer(status: int, message: str, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status=status, body={"error": message}, headers=headers)


class BadRequest(Exception):
    """A request refused for its form (status 400, 408, 413, 415); ``unread_body``: the
    body was left unread, so the connection ends with the answer."""

    def __init__(self, status: int, message: str, *, unread_body: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unread_body = unread_body


def problem_answer(exc: Exception) -> Answer | None:
    """The answer to an error a task route raised, None for one that is not a client's or
    the store's (a bug: the server's 500)."""
    if isinstance(exc, BadRequest):
        # A body left unread (too large, too slow, gone) ends the connection with it.
        close = {"Connection": "close"} if exc.unread_body else None
        return error_answer(exc.status, str(exc), headers=close)
    if isinstance(exc, BadListing):  # a task listing's or a bulk action's filter
        return error_answer(400, str(exc))
    if isinstance(exc, UnknownTask):
        return error_answer(404, str(exc))
    if isinstance(exc, TaskStateConflict):
        return error_answer(409, str(exc))
    if isinstance(exc, BatchTooLarge):
        return error_answer(413, str(exc))
    if isinstance(exc, BatchRejected):
        items = [_problem_json(p) for p in exc.problems]
        return Answer(status=422, body={"error": str(exc), "items": items})
    if isinstance(exc, TaskRejected):
        return error_answer(422, str(exc))
    if isinstance(exc, StoreUnavailable):
        return error_answer(503, str(exc))
    if isinstance(exc, StoreError):
        return error_answer(500, str(exc))
    return None


NOT_OPEN = error_answer(503, "the task store is not open yet (database unavailable?)")
PROBLEMS = (BadRequest, BadListing, UnknownTask, TaskStateConflict, TaskRejected, StoreError)
"""What :func:`problem_answer` answers (BatchTooLarge and BatchRejected are TaskRejected)."""


def _problem_json(problem: ItemProblem) -> dict[str, Any]:
    return {"index": problem.index, "field": problem.field, "message": problem.message}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json(
    headers: Mapping[str, str], chunks: AsyncIterable[bytes], timeout: float, *, batch: bool
) -> Any:
    """The body's JSON, of at most MAX_BODY bytes; with ``batch``, an array body (a batch
    enqueue) may have up to MAX_BATCH_BODY: which limit holds is known from the body's
    first byte that is not white space, so no object is read past MAX_BODY either.
    ``headers`` by lower-case name; ``chunks`` raises ClientDisconnect for a client gone."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and not media.endswith("json"):  # application/json, application/*+json
        raise BadRequest(
            415, f"the body must be JSON: send Content-Type: application/json (got {media!r})"
        )
    declared = headers.get("content-length", "")
    most = MAX_BATCH_BODY if batch else MAX_BODY
    if _DIGITS.fullmatch(declared) and int(declared) > most:
        raise BadRequest(413, _too_large(most), unread_body=True)
    body = bytearray()  # appended to in place: a 16 MiB batch in small chunks stays linear
    limit: int | None = None if batch else MAX_BODY  # None: no byte but white space yet
    try:
        with anyio.fail_after(timeout):
            async for chunk in chunks:
                body += chunk
                if limit is None and (start := chunk.lstrip()[:1]):
                    limit = MAX_BATCH_BODY if start == b"[" else MAX_BODY
                if len(body) > (MAX_BODY if limit is None else limit):
                    raise BadRequest(413, _too_large(limit or MAX_BODY), unread_body=True)
    except TimeoutError:
        message = f"request body not received within {timeout:g}s"
        raise BadRequest(408, message, unread_body=True) from None
    except ClientDisconnect:
        message = "the client went away before sending the whole body"
        raise BadRequest(400, message, unread_body=True) from None
    try:
        return json.loads(bytes(body) or b"null", parse_constant=_refuse_constant)
    except RecursionError:
        raise BadRequest(
            400,
            f"body is nested too deeply to decode: a payload may nest at most {MAX_DEPTH} "
            "levels of arrays and objects",
        ) from None
    except ValueError as exc:  # also UnicodeDecodeError, and integers of over 4300 digits
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None


def _too_large(limit: int) -> str:
    if limit == MAX_BATCH_BODY:
        return f"request body over {limit} bytes (the limit of a batch, an array of tasks)"
    return f"request body over {limit} bytes"


def field_problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


async def enqueue_answer(
    headers: Mapping[str, str],
    chunks: AsyncIterable[bytes],
    tasks: TaskService,
    *,
    body_timeout: float,
    store: str | None,
) -> Answer:
    """``POST /tasks``: 201 with the new task's id (200: its unique key's holder), or, for
    an array body, the batch's ``tasks``. Raises what :func:`problem_answer` answers."""
    meant = headers.get(_STORE_HEADER)
    if meant is not None and store is not None and not hmac.compare_digest(meant, store):
        # Read before the body: a misdirected batch is not received at all.
        return error_answer(
            421,
            "this daemon serves another store than the one named by Gladd-Store-SHA256: "
            "enqueue into that store directly",
            headers={"Connection": "close"},
        )
    raw = await read_json(headers, chunks, body_timeout, batch=True)
    # W3C Trace Context: the enqueue continues the caller's trace (when traces are on).
    trace = {name: value for name in TRACE_HEADERS if (value := headers.get(name))}
    # Who created it, for its timeline: the CLI says so in a header; anyone else is HTTP.
    source = "cli" if headers.get(_SOURCE_HEADER) == "cli" else "http"
    if isinstance(raw, list):
        return await _enqueue_many(raw, tasks, trace or None, source)
    try:
        body = EnqueueRequest.model_validate(raw)
    except ValidationError as exc:
        return error_answer(400, field_problems(exc))
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
    return Answer(status=status, body={"id": enqueued.id, "created": enqueued.created})


async def _enqueue_many(
    raw: list[Any], tasks: TaskService, trace: dict[str, str] | None, source: str
) -> Answer:
    """A batch: 201 when any task was created, 200 when every item matched an unfinished
    task's unique key; ``tasks`` in item order."""
    items, refused = parse_items(raw)
    enqueued = await tasks.enqueue_many(items, trace=trace, refused=refused, source=source)
    created = any(e.created for e in enqueued)
    shown = [{"id": e.id, "created": e.created} for e in enqueued]
    return Answer(status=201 if created or not enqueued else 200, body={"tasks": shown})


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


class FastEnqueue:
    """Answers ``POST /tasks`` without the app behind it, which gets everything else
    (``GET /tasks``, a ``PUT /tasks``'s 405, ``/tasks/``, a request under a root path)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tasks: TaskService,
        store_open: Callable[[], bool],
        body_timeout: float,
        store_sha256: str | None,
    ) -> None:
        self.app = app
        self._tasks = tasks
        self._store_open = store_open
        self._body_timeout = body_timeout
        self._store = store_sha256

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/tasks"
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        answer = await self._answer(scope, receive)
        await send_answer(send, answer)

    async def _answer(self, scope: Scope, receive: Receive) -> Answer:
        if not self._store_open():
            return NOT_OPEN
        try:
            return await enqueue_answer(
                _headers(scope),
                _body(receive),
                self._tasks,
                body_timeout=self._body_timeout,
                store=self._store,
            )
        except PROBLEMS as exc:
            answer = problem_answer(exc)
            assert answer is not None  # PROBLEMS are what it answers
            return answer


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by (lower-case) name, the first of a repeated one, as
    Starlette's ``Headers.get`` reads them."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; ClientDisconnect for a client gone before its end."""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


async def send_answer(send: Send, answer: Answer) -> None:
    """The answer as ``application/json``, with its extra headers."""
    body = render_json(answer.body)
    headers = [
        (b"content-length", str(len(body)).encode("latin-1")),
        (b"content-type", b"application/json"),
    ]
    if answer.headers:
        extra = answer.headers.items()
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
