"""Who asked: every operator action on the admin address is logged with what it did, to
which tasks or breakers, and from where (issue 14, "Every action is logged with what, which
tasks, and from where").

The auth middleware records how a request got in under ``scope["gladd.auth"]``: ``"token"``
(an ``Authorization: Bearer`` header), ``"cookie"`` (the console's login cookie), or nothing
(no admin token is configured, so the admin address is loopback only).
"""

from __future__ import annotations

from collections.abc import Sequence

from loguru import logger
from starlette.requests import Request

AUTH_SCOPE_KEY = "gladd.auth"
_SHOWN_IDS = 20  # a bulk action names this many ids in its log line, then counts the rest


def who(request: Request) -> str:
    """``"127.0.0.1 (token)"``: the client's address and how it authenticated."""
    client = request.client.host if request.client else "unknown"
    auth = request.scope.get(AUTH_SCOPE_KEY) or "no token"
    return f"{client} ({auth})"


def describe_ids(ids: Sequence[int]) -> str:
    """``"tasks 1, 2, 3"``; a long list is cut after a few ids with a count of the rest."""
    if not ids:
        return "no tasks"
    shown = ", ".join(str(i) for i in ids[:_SHOWN_IDS])
    more = len(ids) - _SHOWN_IDS
    noun = "task" if len(ids) == 1 else "tasks"
    return f"{noun} {shown}" + (f" and {more} more" if more > 0 else "")


def log_action(request: Request, action: str, target: str) -> None:
    """One WARNING line per operator action, e.g. ``admin action retry on tasks 4, 5 by
    127.0.0.1 (cookie)``; ``target`` names what it acted on (:func:`describe_ids` for tasks,
    ``"breaker http:api.example"``). Bound ``audit=True`` so a JSON sink can pick them out."""
    logger.bind(audit=True).warning("admin action {} on {} by {}", action, target, who(request))
