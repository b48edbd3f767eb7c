"""The admin API's policies routes: the served file, and the generations before it.

- ``GET /policies``: the file served now: ``path``, ``generation``, ``sha256``,
  ``loaded_at``, ``trigger`` and its whole ``text``.
- ``GET /policies/history``: the generations since the daemon started, newest first, each
  with its time, trigger, sha256, changes and unified diff against the one before, and the
  ``last_rejection`` (with its ``file:line:col`` errors and whether it still ``standing``).
  ``?limit=N`` (a whole number from 1) returns the newest N; anything else is a 400.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gladd.admin.tasks import JSONBody, error
from gladd.observe.policy_history import PolicyHistory


def policy_routes(history: PolicyHistory) -> list[Route]:
    """``GET /policies`` and ``GET /policies/history``, read from ``history``."""

    async def served(_: Request) -> JSONResponse:
        current = history.served
        if current is None:  # the daemon records its first generation before it serves
            return error(503, "no policies generation recorded yet; try again")
        return JSONBody(
            {
                "path": current.source,
                "generation": current.generation,
                "sha256": current.sha256,
                "loaded_at": current.at.isoformat(),
                "trigger": current.trigger,
                "text": history.served_text,
            }
        )

    async def generations(request: Request) -> JSONResponse:
        given = request.query_params.get("limit")
        limit: int | None = None
        if given is not None:
            limit = _positive(given)
            if limit is None:
                return error(
                    400,
                    f"limit={given!r} is not a whole number from 1: give how many of the "
                    "newest generations to return, e.g. ?limit=10, or leave it out for all",
                )
        return JSONBody(history.to_json(limit))

    return [
        Route("/policies", served, methods=["GET"]),
        Route("/policies/history", generations, methods=["GET"]),
    ]


def _positive(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number >= 1 else None
