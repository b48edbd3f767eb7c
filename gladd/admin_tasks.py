"""The admin API's task routes: enqueue, list, show, cancel, retry.

Every route answers JSON; errors are ``{"error": "..."}`` with a status that fits:
400 malformed request, 401 missing or wrong token, 404 no such task, 413 body too large,
422 refused task (unknown kind, invalid payload), 503 store unavailable.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gladd.durations import Duration
from gladd.errors import StoreError, StoreUnavailable, TaskRejected, UnknownTask
from gladd.executor.service import TaskService, task_json

MAX_BODY = 1024 * 1024


class EnqueueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(min_length=1, max_length=200)
    payload: Any = None
    delay: Duration = 0.0
    priority: int | None = None
    unique_key: str | None = Field(None, max_length=500)
    timeout: Duration | None = None


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def _guarded(
    handler: Callable[[Request, TaskService], Awaitable[JSONResponse]],
    service: Callable[[], TaskService | None],
) -> Endpoint:
    async def endpoint(request: Request) -> JSONResponse:
        tasks = service()
        if tasks is None:
            return error(503, "the task store is not open yet (database unavailable?)")
        try:
            return await handler(request, tasks)
        except UnknownTask as exc:
            return error(404, str(exc))
        except TaskRejected as exc:
            return error(422, str(exc))
        except StoreUnavailable as exc:
            return error(503, str(exc))
        except StoreError as exc:
            return error(500, str(exc))

    return endpoint


async def _read_json(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _BadRequest(413, f"request body over {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise _BadRequest(413, f"request body over {MAX_BODY} bytes")
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise _BadRequest(400, f"body is not valid JSON: {exc}") from None


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _enqueue(request: Request, tasks: TaskService) -> JSONResponse:
    try:
        raw = await _read_json(request)
        body = EnqueueRequest.model_validate(raw)
    except _BadRequest as exc:
        return error(exc.status, str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return error(400, problems)
    enqueued = await tasks.enqueue(
        body.kind,
        body.payload,
        delay=body.delay,
        priority=body.priority,
        unique_key=body.unique_key,
        timeout=body.timeout,
    )
    status = 201 if enqueued.created else 200
    return JSONResponse({"id": enqueued.task.id, "created": enqueued.created}, status_code=status)


def _task_id(request: Request) -> int:
    raw = request.path_params["task_id"]
    return int(raw)


async def _show(request: Request, tasks: TaskService) -> JSONResponse:
    return JSONResponse(task_json(await tasks.get(_task_id(request))))


async def _list(request: Request, tasks: TaskService) -> JSONResponse:
    query = request.query_params
    limit_text = query.get("limit", "100")
    if not limit_text.isdigit():
        return error(400, f"limit must be a whole number (got {limit_text!r})")
    found = await tasks.list(
        state=query.get("state"), kind=query.get("kind") or None, limit=int(limit_text)
    )
    return JSONResponse({"tasks": [task_json(t) for t in found]})


async def _cancel(request: Request, tasks: TaskService) -> JSONResponse:
    return JSONResponse(task_json(await tasks.cancel(_task_id(request))))


async def _retry(request: Request, tasks: TaskService) -> JSONResponse:
    return JSONResponse(task_json(await tasks.retry(_task_id(request))))


def task_routes(service: Callable[[], TaskService | None]) -> list[Route]:
    return [
        Route("/tasks", _guarded(_enqueue, service), methods=["POST"]),
        Route("/tasks", _guarded(_list, service), methods=["GET"]),
        Route("/tasks/{task_id:int}", _guarded(_show, service), methods=["GET"]),
        Route("/tasks/{task_id:int}/cancel", _guarded(_cancel, service), methods=["POST"]),
        Route("/tasks/{task_id:int}/retry", _guarded(_retry, service), methods=["POST"]),
    ]
