"""Cross-site request refusal for every state-changing request on the admin address.

A token in a cookie (or none at all, on loopback) does not stop a page on another site
from making the browser POST to the admin address: that is CSRF, and Flower shipped
exactly that (issue 14, Safety). Browsers say where a request comes from: ``Sec-Fetch-Site``
(Fetch Metadata) when they send it, else ``Origin``. A POST, PUT, PATCH or DELETE is
refused when ``Sec-Fetch-Site`` is there and is neither ``same-origin`` nor ``none`` (the
user typed it), or, without it, when ``Origin`` is there and is not this host. A request
with neither (curl, the CLI, a producer's HTTP client) is not a browser's and passes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from gladd.admin.refusals import send_refusal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TRUSTED_SITES = frozenset({b"same-origin", b"none"})


def cross_site_problem(method: str, headers: dict[bytes, bytes]) -> str | None:
    """Why this request is refused as cross-site, or None when it may go on."""
    if method in SAFE_METHODS:
        return None
    site = headers.get(b"sec-fetch-site")
    if site is not None:
        if site.lower() in _TRUSTED_SITES:
            return None
        shown = site.decode("latin-1")
        return f"cross-site request refused: Sec-Fetch-Site is {shown!r}, not same-origin"
    origin = headers.get(b"origin")
    if origin is None:
        return None
    host = headers.get(b"host", b"").decode("latin-1").lower()
    shown = origin.decode("latin-1")
    if urlsplit(shown.lower()).netloc != host or not host:
        return f"cross-site request refused: Origin {shown!r} is not this address ({host})"
    return None


class CrossSiteGuard:
    """Refuses what :func:`cross_site_problem` refuses: 403, JSON for the API and an HTML
    page for the console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = cross_site_problem(scope["method"], dict(scope["headers"]))
            if problem is not None:
                await send_refusal(
                    scope, receive, send, status=403, title="Refused", message=problem
                )
                return
        await self.app(scope, receive, send)
