"""The read-only admin address (``GLADD_ADMIN_READ_ONLY``): every operator action refused.

Refused by default, so a route added later is covered too: every request that is not a
GET or HEAD is an operator action (cancel, retry, bulk, pause and resume, breaker isolate
and reset, schedule run, reload), but for what producers need — ``POST /tasks`` (enqueue;
waiting is a GET) — and the console's login and logout.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gladd.admin.cross_site import SAFE_METHODS
from gladd.admin.refusals import CONSOLE_PREFIX, send_refusal

ALLOWED = frozenset(
    {("POST", "/tasks"), ("POST", f"{CONSOLE_PREFIX}/login"), ("POST", f"{CONSOLE_PREFIX}/logout")}
)
MESSAGE = (
    "the admin address is read-only (GLADD_ADMIN_READ_ONLY is set): operator actions are "
    "refused; unset GLADD_ADMIN_READ_ONLY and restart gladd to allow them"
)


def is_operator_action(method: str, path: str) -> bool:
    """Whether a request changes what gladd does (what read-only mode refuses)."""
    return method not in SAFE_METHODS and (method, path.rstrip("/") or "/") not in ALLOWED


class ReadOnly:
    """403 for every operator action (:func:`is_operator_action`), saying how to lift it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_operator_action(scope["method"], scope["path"]):
            await send_refusal(scope, receive, send, status=403, title="Read-only", message=MESSAGE)
            return
        await self.app(scope, receive, send)
