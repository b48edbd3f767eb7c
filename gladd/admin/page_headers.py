"""Headers on every console response that keep other sites from using it against its user.

- ``frame-ancestors 'none'`` / ``X-Frame-Options: DENY``: no other page may frame the
  console. Framed, its buttons could be clicked through a decoy (clickjacking), and the
  clicks would be same-origin requests that the cross-site check lets through.
- A Content Security Policy allowing scripts, styles and requests from the console's own
  origin only: text that slipped past escaping still could not run a script.
- ``nosniff``, and no ``Referer`` with task ids leaving for another site.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class PageHeaders:
    """Adds :data:`HEADERS` to every response of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
