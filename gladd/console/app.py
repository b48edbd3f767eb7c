"""The console's Starlette app, mounted at ``/ui`` by :func:`gladd.admin.app.create_app`.

Routes (under ``/ui``): ``/`` overview, ``/tasks`` (the filters and cursor of ``GET /tasks``,
:mod:`.paging`), ``/tasks/bulk`` (a bulk action's count to confirm), ``/tasks/{id}``,
``/dead``, ``/kinds``, ``/breakers``, ``/schedules``, ``/policies``; ``/login`` and
``/logout`` when a token is set; ``/static/`` the stylesheet and the vendored htmx. The
actions are POSTs next to what they act on (:mod:`.actions`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from loguru import logger
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gladd.admin.audit import AUTH_SCOPE_KEY
from gladd.admin.refusals import CONSOLE_PREFIX, refusal
from gladd.admin.session import LOGIN_PATH, cookie_header, logout_header
from gladd.console import actions, views
from gladd.console.deps import ConsoleDeps
from gladd.errors import StoreError, StoreUnavailable, UnknownTask

STATIC = Path(__file__).parent / "static"
POLL = "every 2s"
"""How often a page's live part refreshes (htmx), while the tab is visible."""

View = Callable[[ConsoleDeps, Request], Awaitable[dict[str, Any]]]

_env = Environment(
    loader=PackageLoader("gladd.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

SCREENS = [
    ("overview", "/", "Overview"),
    ("tasks", "/tasks", "Tasks"),
    ("dead", "/dead", "Dead"),
    ("kinds", "/kinds", "Kinds"),
    ("breakers", "/breakers", "Breakers"),
    ("schedules", "/schedules", "Schedules"),
    ("policies", "/policies", "Policies"),
]


def render(
    deps: ConsoleDeps, request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    page = _env.get_template(template).render(
        base=CONSOLE_PREFIX,
        screens=SCREENS,
        node=deps.node,
        read_only=deps.read_only,
        logged_in=request.scope.get(AUTH_SCOPE_KEY) == "cookie",
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        poll=POLL,
        **context,
    )
    return HTMLResponse(page, status_code=status)


def screen(
    deps: ConsoleDeps, view: View, template: str
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if not deps.store_open():
            return refusal(request.url.path, 503, "Starting", "the task store is not open yet")
        try:
            context = await view(deps, request)
        except UnknownTask as exc:
            return refusal(request.url.path, 404, "Not found", str(exc))
        except StoreUnavailable as exc:
            return refusal(request.url.path, 503, "Store unavailable", str(exc))
        except StoreError as exc:
            return refusal(request.url.path, 500, "Store error", str(exc))
        return render(deps, request, template, context)

    return endpoint


def _next(raw: str | None) -> str:
    inside = raw is not None and raw.startswith(CONSOLE_PREFIX + "/") and "\\" not in raw
    return raw if inside and raw is not None and not raw.startswith("//") else f"{CONSOLE_PREFIX}/"


def login_routes(deps: ConsoleDeps) -> list[Route]:
    """``/login`` (the form, and its POST setting the cookie) and ``/logout``."""
    token = deps.token

    async def login(request: Request) -> Response:
        if token is None:
            return RedirectResponse(f"{CONSOLE_PREFIX}/", status_code=303)
        if request.method == "GET":
            context = {"next": _next(request.query_params.get("next")), "wrong": False}
            return render(deps, request, "login.html", context)
        form = await actions.read_form(request)
        given = form.get("token", "")
        where = _next(form.get("next"))
        if not hmac.compare_digest(given.encode(), token.encode()):
            client = request.client.host if request.client else "unknown"
            logger.warning("console login refused from {}: wrong token", client)
            return render(deps, request, "login.html", {"next": where, "wrong": True}, 401)
        response = RedirectResponse(where, status_code=303)
        response.headers.append("set-cookie", cookie_header(token))
        return response

    async def logout(_: Request) -> Response:
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.headers.append("set-cookie", logout_header())
        return response

    return [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


def console_app(deps: ConsoleDeps) -> Starlette:
    """The console over ``deps``, to mount at ``/ui``."""

    def act(action: actions.Action, default: str) -> Callable[[Request], Awaitable[Response]]:
        return actions.acting(deps, action, f"{CONSOLE_PREFIX}{default}")

    routes = [
        Route("/", screen(deps, views.overview, "overview.html")),
        Route("/tasks", screen(deps, views.tasks, "tasks.html")),
        Route("/tasks/bulk", screen(deps, views.bulk_preview, "bulk.html")),
        Route("/tasks/{task_id:int}", screen(deps, views.task_detail, "task.html")),
        Route("/dead", screen(deps, views.dead, "dead.html")),
        Route("/kinds", screen(deps, views.kinds, "kinds.html")),
        Route("/breakers", screen(deps, views.breakers, "breakers.html")),
        Route("/schedules", screen(deps, views.schedules, "schedules.html")),
        Route("/policies", screen(deps, views.policies, "policies.html")),
        *login_routes(deps),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    posts = [
        ("/tasks/bulk", actions.bulk_tasks, "/tasks"),
        ("/tasks/{task_id}/retry", actions.retry_task, "/dead"),
        ("/tasks/{task_id}/cancel", actions.cancel_task, "/tasks"),
        ("/kinds/{kind:path}/pause", actions.pause_kind, "/kinds"),
        ("/kinds/{kind:path}/resume", actions.resume_kind, "/kinds"),
        ("/breakers/{name:path}/isolate", actions.breaker_change(True), "/breakers"),
        ("/breakers/{name:path}/reset", actions.breaker_change(False), "/breakers"),
        ("/schedules/{name}/run", actions.run_schedule, "/schedules"),
    ]
    routes += [Route(path, act(action, back), methods=["POST"]) for path, action, back in posts]
    return Starlette(routes=routes, exception_handlers={HTTPException: _not_here})


async def _not_here(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405 as a console page (the API's are JSON)."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 405:
        message = f"{path} does not take {request.method}"
    elif exc.status_code == 404:
        message = f"the console has no page {path}"
    else:
        message = str(exc.detail)
    return refusal(
        path, exc.status_code, "Not found" if exc.status_code == 404 else "Refused", message
    )
