"""The console's actions: HTML form POSTs, each logged with who asked
(:func:`gladd.admin.audit.log_action`), answered by a 303 back to the screen it came
from (so a reload does not post again), or by a page saying what went wrong.

The admin address's layers have already refused a cross-site POST and, in read-only
mode, every action (:mod:`gladd.admin.cross_site`, :mod:`gladd.admin.read_only`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gladd.admin.audit import describe_ids, log_action, who
from gladd.admin.breakers import change_breaker
from gladd.admin.fast_enqueue import PROBLEMS, problem_answer
from gladd.admin.refusals import CONSOLE_PREFIX, refusal
from gladd.console import paging
from gladd.console.deps import ConsoleDeps
from gladd.errors import (
    UnknownTask,
)
from gladd.executor import bulk
from gladd.store.listing import BadListing

MAX_FORM = 64 * 1024
"""Bytes of an action's form: a reason at most."""

Action = Callable[[ConsoleDeps, Request, dict[str, str]], Awaitable[Response | None]]


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields (the first of each name)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            break
    fields = parse_qs(body[:MAX_FORM].decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def back_to(form: dict[str, str], default: str) -> str:
    """Where to go after an action: the form's ``back`` when it is a console page."""
    back = form.get("back", "")
    inside = back.startswith(CONSOLE_PREFIX + "/") and not back.startswith("//")
    return back if inside and "\\" not in back else default


def failed(request: Request, status: int, message: str) -> Response:
    return refusal(request.url.path, status, "Not done", message)


def acting(
    deps: ConsoleDeps, action: Action, default: str
) -> Callable[[Request], Awaitable[Response]]:
    """``action`` as an endpoint: the form read, the store's and the task service's errors
    as pages with a status that fits, a 303 back when it went through."""

    async def endpoint(request: Request) -> Response:
        if not deps.store_open():
            return failed(request, 503, "the task store is not open yet (database unavailable?)")
        form = await read_form(request)
        try:
            answered = await action(deps, request, form)
        except PROBLEMS as exc:  # the statuses the API answers with
            answer = problem_answer(exc)
            assert answer is not None  # PROBLEMS are what it answers
            return failed(request, answer.status, str(exc))
        if answered is not None:
            return answered
        return RedirectResponse(back_to(form, default), status_code=303)

    return endpoint


def _task_id(request: Request) -> int:
    raw: str = request.path_params["task_id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise UnknownTask(f"no task with id {raw[:40]!r}: task ids are whole numbers")
    return int(raw)


async def retry_task(deps: ConsoleDeps, request: Request, form: dict[str, str]) -> None:
    task_id = _task_id(request)
    await deps.tasks.retry(task_id, by=who(request))
    log_action(request, "retry", describe_ids([task_id]))


async def cancel_task(deps: ConsoleDeps, request: Request, form: dict[str, str]) -> None:
    task_id = _task_id(request)
    await deps.tasks.cancel(task_id, by=who(request))
    log_action(request, "cancel", describe_ids([task_id]))


async def pause_kind(deps: ConsoleDeps, request: Request, form: dict[str, str]) -> None:
    kind = request.path_params["kind"]
    reason = form.get("reason", "").strip()
    await deps.tasks.pause(f"kind:{kind}", reason=reason, by=f"console:{who(request)}")
    log_action(request, "pause", f"kind {kind}" + (f" ({reason})" if reason else ""))


async def resume_kind(deps: ConsoleDeps, request: Request, form: dict[str, str]) -> None:
    kind = request.path_params["kind"]
    ended = await deps.tasks.resume(f"kind:{kind}")
    log_action(request, "resume", f"kind {kind}" + ("" if ended else " (was not paused)"))


async def run_schedule(deps: ConsoleDeps, request: Request, form: dict[str, str]) -> None:
    name = request.path_params["name"]
    enqueued = await deps.tasks.run_schedule(name)
    log_action(request, "run", f"schedule {name} (task {enqueued.id})")


async def bulk_tasks(deps: ConsoleDeps, request: Request, form: dict[str, str]) -> Response:
    """Retry or cancel every task matching the form's filter, as ``POST /tasks/bulk`` does:
    refused (409, nothing changed) when more match than the previewed ``expect``."""
    action = bulk.parse_action(form.get("action"))
    query = {k: [form[k]] for k in paging.FILTER_KEYS if form.get(k)}
    where = paging.read_page(query, limit=1, now=deps.now()).where
    expect = form.get("expect", "")
    if not expect.isascii() or not expect.isdigit() or len(expect) > 12:
        raise BadListing(
            "expect", f"the previewed count, a whole number (got {expect[:40]!r}): preview again"
        )
    done = await bulk.run(
        deps.tasks.store, action, where, expect=int(expect), now=deps.now(), by=who(request)
    )
    log_action(request, action.value, paging.described(done.changed, done.skipped))
    verb = "retried" if action is bulk.BulkAction.RETRY else "cancelled"
    said = f"{verb} {len(done.changed)} task{'' if len(done.changed) == 1 else 's'}"
    said += f" ({done.skipped} no longer could be)" if done.skipped else ""
    back = back_to(form, f"{CONSOLE_PREFIX}/tasks")
    return RedirectResponse(paging.with_done(back, said), status_code=303)


def breaker_change(isolate: bool) -> Action:
    async def change(deps: ConsoleDeps, request: Request, form: dict[str, str]) -> Response | None:
        status, body = await change_breaker(
            deps.resilience,
            request,
            request.path_params["name"],
            isolate=isolate,
            now=deps.now,
            persist=deps.persist_breaker,
        )
        return None if status == 200 else failed(request, status, str(body["error"]))

    return change
