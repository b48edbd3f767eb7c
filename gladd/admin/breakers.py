"""The admin API's breaker routes: list every breaker, isolate one, reset one.

- ``GET /breakers``: every breaker (see :func:`breaker_json` for the fields).
- ``POST /breakers/{name}/isolate``: hold it open (no call passes, no probe) until reset.
- ``POST /breakers/{name}/reset``: close it and forget its failures (and any isolation).

``name`` is a breaker's ``POLICY:TARGET`` as listed, or the service (task kind) it guards
when one breaker guards it; an unknown name is a 404 naming the breakers there are (but
the reset of an isolation whose breaker the policies no longer have ends it). Each
isolate and reset is logged with who asked: the client's address, and whether the request
carried the admin token. With ``persist`` (the daemon's store), the override is written
first, so that every node sharing the store holds it too; the store failing is a 503 and
changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gladd.admin.audit import log_action, who
from gladd.admin.tasks import JSONBody
from gladd.errors import StoreError
from gladd.resilience.breaker import Breaker
from gladd.resilience.guards import Resilience, UnknownBreaker

Persist = Callable[[str, bool, str], Awaitable[None]]
"""Store an override: (breaker id, isolated or not, who asked)."""


def _at(now: datetime, ago: float) -> str:
    return (now - timedelta(seconds=ago)).isoformat()


def breaker_json(ident: str, breaker: Breaker, now: datetime) -> dict[str, Any]:
    """One breaker for ``GET /breakers``; ``now`` is the wall clock its ages count back from."""
    stats = breaker.stats()
    policy = breaker.policy
    return {
        "name": ident,
        "policy": breaker.name,
        "target": breaker.target,
        "state": stats.state.value,
        "since": _at(now, stats.since_ago),
        "reason": stats.reason,
        "mode": policy.mode,
        "consecutive_failures": stats.consecutive_failures,
        "window_failures": stats.window_failures,
        "window_successes": stats.window_successes,
        "window": policy.window,
        "trips": stats.trips,
        "opened_total": stats.opened_total,
        "next_probe": None if stats.retry_in is None else _at(now, -stats.retry_in),
        "recent_failures": [
            {"error": f.reason, "at": _at(now, f.ago)} for f in stats.recent_failures
        ],
    }


async def change_breaker(
    resilience: Resilience,
    request: Request,
    name: str,
    *,
    isolate: bool,
    now: Callable[[], datetime],
    persist: Persist | None = None,
) -> tuple[int, dict[str, Any]]:
    """Isolate (or reset) breaker ``name`` for ``request``, logged with who asked: the
    status and body ``POST /breakers/{name}/isolate|reset`` answers (the console shows
    the same)."""
    asker = who(request)
    try:
        ident, breaker = resilience.find_breaker(name)
    except UnknownBreaker as exc:
        if isolate or name not in resilience.isolated():
            return 404, {"error": str(exc), "known": exc.known}
        # Isolated once, its breaker gone from the policies since: end the hold.
        return await _forget(resilience, request, name, asker, persist)
    was = breaker.state
    if persist is not None:
        try:
            await persist(ident, isolate, asker)
        except StoreError as exc:
            return 503, {"error": f"could not store the override for every node: {exc}"}
    if isolate:
        resilience.isolate_breaker(ident, f"isolated by operator {asker}")
    else:
        resilience.reset_breaker(ident, f"reset by operator {asker}")
    action = "isolate" if isolate else "reset"
    log_action(request, action, f"breaker {ident} (was {was.value})")
    body = breaker_json(ident, breaker, now())
    body["was"] = was.value
    return 200, body


async def _forget(
    resilience: Resilience, request: Request, name: str, asker: str, persist: Persist | None
) -> tuple[int, dict[str, Any]]:
    if persist is not None:
        try:
            await persist(name, False, asker)
        except StoreError as exc:
            return 503, {"error": f"could not store the override for every node: {exc}"}
    resilience.reset_breaker(name)
    log_action(request, "reset", f"breaker {name} (was isolated, no such breaker now)")
    return 200, {"name": name, "state": "closed", "was": "isolated"}


def breaker_routes(
    resilience: Resilience,
    *,
    now: Callable[[], datetime],
    persist: Persist | None = None,
) -> list[Route]:
    """The ``/breakers`` routes over ``resilience``'s breakers; each change is logged with
    who asked (:mod:`gladd.admin.audit`)."""

    async def listing(_: Request) -> JSONResponse:
        at = now()
        listed = [breaker_json(i, b, at) for i, b in resilience.known_breakers().items()]
        return JSONBody({"breakers": listed, "isolated": sorted(resilience.isolated())})

    def change(isolate: bool) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            name = request.path_params["name"]
            status, body = await change_breaker(
                resilience, request, name, isolate=isolate, now=now, persist=persist
            )
            return JSONBody(body, status_code=status)

        return endpoint

    return [
        Route("/breakers", listing, methods=["GET"]),
        Route("/breakers/{name:path}/isolate", change(True), methods=["POST"]),
        Route("/breakers/{name:path}/reset", change(False), methods=["POST"]),
    ]
