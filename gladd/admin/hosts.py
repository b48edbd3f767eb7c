"""The admin address answers only to its own names while it has no token (DNS rebinding).

Without a token the admin address is loopback only, and that is its whole protection: a
page on another site cannot read from it, the browser's same-origin rule sees to that. But
a site can point its own name at 127.0.0.1 once the page has loaded (DNS rebinding): the
browser then sends ``Host: evil.example:8000``, calls the page's requests same-origin, and
lets it read and act on the admin API and the console. So, with no token, a request whose
``Host`` is not a loopback name or the configured admin host is refused (``421``, RFC 9110
§15.5.20: the request was meant for another server). With a token, the token is the
protection (a rebound page has neither it nor the console's cookie). A request with no
``Host`` at all is not a browser's and passes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from gladd.admin.refusals import send_refusal

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port: ``[::1]:8000`` → ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, _, _ = header.partition(":")
    return name.rstrip(".")


def _loopback_address(name: str) -> bool:
    """127.0.0.0/8 or ::1 written as an address (a name like ``127.0.0.1.evil.example``,
    which anyone may register, is not one)."""
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class OwnNamesOnly:
    """421 for a request whose ``Host`` is none of ``names`` (and not a loopback name)."""

    def __init__(self, app: ASGIApp, *, names: Iterable[str]) -> None:
        self.app = app
        self.names = LOOPBACK_NAMES | {host_name(n) for n in names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host_name(given)
            if given and name not in self.names and not _loopback_address(name):
                message = (
                    f"this admin address does not answer to the name {given!r}: without "
                    "GLADD_ADMIN_TOKEN it serves loopback names only (localhost, 127.0.0.1, "
                    "[::1]) and the configured admin host, so a page on another site cannot "
                    "rebind its name to it; use one of those, or set a token"
                )
                await send_refusal(
                    scope, receive, send, status=421, title="Misdirected", message=message
                )
                return
        await self.app(scope, receive, send)
