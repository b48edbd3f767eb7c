"""The admin API's routes: a Starlette app, every answer JSON.

Errors included: an unknown path is a JSON 404, a wrong method a JSON 405 with ``Allow``.
Health reads only the board; every other route needs the admin token when one is set.

:func:`create_app` composes plain ASGI layers, outermost first::

    TokenAuth        the admin token (or the console's login cookie), for every route but
                     the health probes (gladd.admin.session); without a token,
    OwnNamesOnly     a Host that is not this address's own name (DNS rebinding; .hosts)
    CrossSiteGuard   a POST a browser says comes from another site (gladd.admin.cross_site)
    ReadOnly         with GLADD_ADMIN_READ_ONLY, every operator action (gladd.admin.read_only)
    FastEnqueue      POST /tasks, answered without Starlette (gladd.admin.fast_enqueue)
    Starlette        every other route, the console under /ui, and the JSON 404/405

Whatever an outer layer refuses is never enqueued: the lean path sits inside every check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from gladd.admin.breakers import Persist, breaker_routes
from gladd.admin.cross_site import CrossSiteGuard
from gladd.admin.fast_enqueue import FastEnqueue
from gladd.admin.hosts import OwnNamesOnly
from gladd.admin.overview import overview_routes
from gladd.admin.page_headers import PageHeaders
from gladd.admin.policies import policy_routes
from gladd.admin.read_only import ReadOnly
from gladd.admin.refusals import CONSOLE_PREFIX
from gladd.admin.session import TokenAuth
from gladd.admin.tasks import BODY_TIMEOUT, JSONBody, error, task_routes
from gladd.executor.service import TaskService
from gladd.observe.health import HealthBoard, Status
from gladd.observe.policy_history import PolicyHistory
from gladd.observe.reloads import ReloadOutcome
from gladd.resilience.guards import Resilience

HEALTH_JSON = "application/health+json"


class _Rendered(Protocol):
    def render(self) -> str: ...


class ReloadVerdict(Protocol):
    """What ``POST /reload`` answers with: the reloader's result
    (:class:`gladd.reload.reloader.ReloadResult`), read without the admin importing it."""

    @property
    def outcome(self) -> ReloadOutcome: ...
    @property
    def generation(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def changes(self) -> Sequence[_Rendered]: ...
    @property
    def errors(self) -> Sequence[str]: ...
    @property
    def resolved(self) -> bool: ...
    def summary(self) -> str: ...


def create_app(
    board: HealthBoard,
    *,
    tasks: TaskService | None = None,
    store_open: Callable[[], bool] = lambda: True,
    reload: Callable[[str], Awaitable[ReloadVerdict]] | None = None,
    metrics: Callable[[], tuple[bytes, str]] | None = None,
    token: str | None = None,
    body_timeout: float = BODY_TIMEOUT,
    store_sha256: str | None = None,
    resilience: Resilience | None = None,
    now: Callable[[], datetime] | None = None,
    persist_breaker: Persist | None = None,
    policies: PolicyHistory | None = None,
    console: ASGIApp | None = None,
    read_only: bool = False,
    own_names: Sequence[str] | None = None,
) -> ASGIApp:
    """The admin routes. Health reads only the board (never the database directly); every
    other route needs ``Authorization: Bearer TOKEN`` when a token is configured. Without
    ``tasks`` there are no ``/tasks`` routes; they answer 503 while ``store_open()`` is
    false (the daemon's store has not opened yet), and an enqueue meant for another store
    than ``store_sha256`` names is a 421 (see :mod:`gladd.admin.tasks`). With
    ``resilience`` there are the ``/breakers`` routes (:mod:`gladd.admin.breakers`), their
    times read on ``now``, their overrides stored through ``persist_breaker``. With
    ``policies`` there are ``GET /policies`` and ``/policies/history``
    (:mod:`gladd.admin.policies`). ``console`` (:mod:`gladd.console`) is served at
    ``/ui``. With ``read_only`` every operator action is refused
    (:mod:`gladd.admin.read_only`).

    The layers, outermost first: token auth (:mod:`gladd.admin.session`) → cross-site
    refusal (:mod:`gladd.admin.cross_site`) → read-only → the routes."""

    async def health(_: Request) -> JSONResponse:
        report = board.report()
        code = 503 if report["status"] == Status.FAIL.value else 200
        return JSONBody(report, status_code=code, media_type=HEALTH_JSON)

    async def live(_: Request) -> JSONResponse:
        # Answering at all proves the event loop and the process are alive.
        return JSONBody({"status": "pass"}, media_type=HEALTH_JSON)

    async def ready(_: Request) -> JSONResponse:
        ok, why = board.ready()
        body = {"status": "pass" if ok else "fail", "output": why}
        return JSONBody(body, status_code=200 if ok else 503, media_type=HEALTH_JSON)

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
    ]
    if tasks is not None:
        routes += overview_routes(tasks, store_open=store_open, body_timeout=body_timeout)
        routes += task_routes(
            tasks, store_open=store_open, body_timeout=body_timeout, store_sha256=store_sha256
        )
    if resilience is not None:
        routes += breaker_routes(
            resilience,
            now=now or (lambda: datetime.now(UTC)),
            persist=persist_breaker,
        )
    if policies is not None:
        routes += policy_routes(policies)
    if reload is not None:
        routes.append(Route("/reload", reload_endpoint(reload), methods=["POST"]))
    if metrics is not None:
        routes.append(Route("/metrics", metrics_endpoint(metrics), methods=["GET"]))
    if console is not None:
        routes.append(Mount(CONSOLE_PREFIX, app=PageHeaders(console)))
    app: ASGIApp = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    if tasks is not None:
        app = FastEnqueue(
            app,
            tasks=tasks,
            store_open=store_open,
            body_timeout=body_timeout,
            store_sha256=store_sha256,
        )
    return _guarded(app, token=token, read_only=read_only, own_names=own_names)


def _guarded(
    app: ASGIApp, *, token: str | None, read_only: bool, own_names: Sequence[str] | None
) -> ASGIApp:
    """The checks around the routes, outermost first: the token (or the console's cookie) —
    or, with no token, the address's own names only —, the cross-site check, read-only."""
    if read_only:
        app = ReadOnly(app)
    app = CrossSiteGuard(app)
    if token:
        return TokenAuth(app, token=token)
    # No token: loopback only, so only its own names (a DNS-rebound page is refused).
    return OwnNamesOnly(app, names=own_names) if own_names is not None else app


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405 (and any HTTPException) as a JSON error that says why."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    path = request.url.path
    if exc.status_code == 404:
        message = f"no such route: {request.method} {path}"
    elif exc.status_code == 405:
        allowed = ", ".join(sorted(m.strip() for m in headers.get("Allow", "").split(",")))
        headers["Allow"] = allowed
        message = f"{path} does not take {request.method} (allowed: {allowed})"
    else:
        message = exc.detail
    return error(exc.status_code, message, headers=headers or None)


def metrics_endpoint(
    render: Callable[[], tuple[bytes, str]],
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: Prometheus text, read from live objects at scrape time."""

    async def scrape(_: Request) -> Response:
        body, content_type = render()
        return Response(body, media_type=content_type)

    return scrape


def reload_endpoint(
    reload: Callable[[str], Awaitable[ReloadVerdict]],
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """``POST /reload``: reload now and answer with the verdict (422 when rejected)."""

    async def endpoint(_: Request) -> JSONResponse:
        result = await reload("api")
        body = {
            "outcome": result.outcome,
            "generation": result.generation,
            "sha256": result.sha256,
            "changes": [c.render() for c in result.changes],
            "errors": list(result.errors),
            # Unchanged, and it ended a standing rejection: the file is the served one again.
            "resolved": result.resolved,
            "summary": result.summary(),
        }
        return JSONBody(body, status_code=422 if result.outcome == "rejected" else 200)

    return endpoint
