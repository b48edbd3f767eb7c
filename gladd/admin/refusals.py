"""How the admin address's ASGI layers refuse a request: JSON for the API, an HTML page for
the console (a browser shows the page, a script reads ``{"error": ...}``)."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from gladd.admin.tasks import error

CONSOLE_PREFIX = "/ui"


def is_console(path: str) -> bool:
    """Whether ``path`` is the console's (``/ui`` and below), not the API's."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def refusal(path: str, status: int, title: str, message: str) -> Response:
    """``message`` as the API's JSON error, or for a console path as a small HTML page with
    ``title`` and a way back."""
    if not is_console(path):
        return error(status, message)
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · gladd</title>"
        f'<link rel=stylesheet href="{CONSOLE_PREFIX}/static/console.css"></head>'
        f"<body><main class=refusal><h1>{escape(title)}</h1><p id=refusal>{escape(message)}</p>"
        f'<p><a href="{CONSOLE_PREFIX}/">Back to the console</a></p></main></body></html>'
    )
    return HTMLResponse(page, status_code=status)


async def send_refusal(
    scope: Scope, receive: Receive, send: Send, *, status: int, title: str, message: str
) -> None:
    await refusal(scope["path"], status, title, message)(scope, receive, send)
