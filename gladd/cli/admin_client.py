"""Talking to a running daemon's admin API from the command line."""

from __future__ import annotations

import httpx

from gladd.errors import StartupError
from gladd.settings import Settings

TIMEOUT = 30.0


def admin_url(settings: Settings) -> str:
    host = settings.admin_host
    # A daemon listening on every address is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.admin_port}"


def admin_request(settings: Settings, method: str, path: str) -> httpx.Response:
    """One request to the daemon; StartupError (exit 69) when nothing answers."""
    headers = {}
    if settings.admin_token is not None:
        headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
    url = admin_url(settings)
    try:
        response = httpx.request(method, url + path, headers=headers, timeout=TIMEOUT)
    except httpx.TransportError as exc:
        raise StartupError(
            f"no gladd answering at {url} ({type(exc).__name__}); is it running? "
            "check --admin-host/--admin-port or GLADD_ADMIN_HOST/GLADD_ADMIN_PORT"
        ) from None
    if response.status_code == 401:
        raise StartupError(f"{url} refused the admin token: set GLADD_ADMIN_TOKEN to its token")
    return response
