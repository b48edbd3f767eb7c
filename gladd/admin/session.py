"""Who may use the admin address: the ``Authorization: Bearer`` token for the API, or the
console's login cookie for ``/ui`` (issue 14, Safety).

The cookie holds an HMAC of the token, never the token itself: reading it (a browser
profile, a proxy log) does not give the token away, and a changed token invalidates every
cookie at once. It is ``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (a browser
does not send it with a request another site started). Without a token there is no login:
the admin address is loopback only then (:meth:`gladd.settings.Settings.admin_bind_problem`).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gladd.admin.audit import AUTH_SCOPE_KEY
from gladd.admin.refusals import CONSOLE_PREFIX, is_console
from gladd.admin.tasks import error

PUBLIC_PATHS = frozenset({"/health", "/health/live", "/health/ready"})
COOKIE = "gladd_console"
LOGIN_PATH = f"{CONSOLE_PREFIX}/login"
# The login page and what it is drawn with are open to everyone: they show nothing.
_OPEN_CONSOLE = (LOGIN_PATH, f"{CONSOLE_PREFIX}/static/")
_PURPOSE = b"gladd console login cookie v1"


def cookie_value(token: str) -> str:
    """The login cookie's value for ``token``: HMAC-SHA256 keyed by the token."""
    return hmac.new(token.encode(), _PURPOSE, hashlib.sha256).hexdigest()


def cookie_header(token: str) -> str:
    """``Set-Cookie`` for a login: the console's paths only, HttpOnly, SameSite=Strict."""
    return f"{COOKIE}={cookie_value(token)}; Path={CONSOLE_PREFIX}; HttpOnly; SameSite=Strict"


def logout_header() -> str:
    """``Set-Cookie`` ending the login cookie."""
    return f"{COOKIE}=; Path={CONSOLE_PREFIX}; HttpOnly; SameSite=Strict; Max-Age=0"


def _cookie(headers: dict[bytes, bytes]) -> str:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return ""


class TokenAuth:
    """Every route but the health probes needs the token: as ``Authorization: Bearer`` (RFC
    6750) anywhere, or as the login cookie under ``/ui``. A console page without either
    is a 303 to the login page; an API route a 401. Records how the request got in under
    ``scope["gladd.auth"]`` (:mod:`gladd.admin.audit`)."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.cookie = cookie_value(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(_OPEN_CONSOLE):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"")
        if given and hmac.compare_digest(given, self.expected):
            scope[AUTH_SCOPE_KEY] = "token"
            await self.app(scope, receive, send)
            return
        console = is_console(path)
        if console and hmac.compare_digest(_cookie(headers).encode(), self.cookie.encode()):
            scope[AUTH_SCOPE_KEY] = "cookie"
            await self.app(scope, receive, send)
            return
        if console and not given:
            query = scope.get("query_string", b"").decode("latin-1")
            back = path + (f"?{query}" if query else "")
            if scope["method"] != "GET":
                back = f"{CONSOLE_PREFIX}/"  # the form is shown again after the login
            target = f"{LOGIN_PATH}?next={quote(back, safe='/')}"
            await RedirectResponse(target, status_code=303)(scope, receive, send)
            return
        message = "wrong admin token" if given else "this route needs Authorization: Bearer TOKEN"
        response = error(401, message, headers={"WWW-Authenticate": 'Bearer realm="gladd"'})
        await response(scope, receive, send)
