"""Talking to a running daemon's admin API from the command line."""

from __future__ import annotations

import httpx

from gladd.cli.admin_http import admin_url
from gladd.errors import StartupError
from gladd.settings import Settings

TIMEOUT = 30.0


def admin_request(settings: Settings, method: str, path: str) -> httpx.Response:
    """One request to the daemon; StartupError (exit 69) when nothing answers."""
    headers = {}
    if settings.admin_token is not None:
        headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
    url = admin_url(settings.admin_host, settings.admin_port)
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
