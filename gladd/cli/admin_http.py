"""The admin API over the standard library's ``http.client``: what ``gladd status`` and
``gladd tasks enqueue`` use, so they start without importing httpx (issue 15)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 5.0
"""Seconds a command waits for the admin API to answer."""


def admin_url(host: str, port: int) -> str:
    """The admin API's base URL; a daemon listening on every address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class Unreachable(Exception):
    """No gladd admin API answered as one; the message says why."""


class BadURL(ValueError):
    """A base URL that is not ``http://`` or ``https://``."""


class NotConnected(Exception):
    """Nothing was sent: the connection failed; ``reason`` is why (a TimeoutError when it
    took too long)."""

    def __init__(self, reason: OSError) -> None:
        super().__init__(str(reason))
        self.reason = reason


class NotSent(Exception):
    """The connection failed before the whole request was sent (a server that answers
    without reading the body, then closes): the server cannot have acted on it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        """The body's JSON; ValueError when it is not."""
        return json.loads(self.body)


def request(
    base: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float,
    connect_timeout: float | None = None,
) -> Answer:
    """One request to ``base + path``. Raises NotConnected when it cannot connect (within
    ``connect_timeout``, else ``timeout``); once connected, TimeoutError when the answer
    takes over ``timeout``, NotSent, another OSError when the connection fails, and
    http.client.HTTPException when the answer is not HTTP; BadURL for a URL it cannot use."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadURL("Request URL is missing an 'http://' or 'https://' protocol.")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=connect_timeout or timeout)
    sent = {"Accept": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        sent["Content-Type"] = "application/json"
    try:
        try:
            connection.connect()
        except OSError as exc:
            raise NotConnected(exc) from exc
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            connection.request(method, parts.path.rstrip("/") + path, body=body, headers=sent)
        except OSError as exc:
            raise NotSent(str(exc)) from exc
        response = connection.getresponse()
        return Answer(status=response.status, body=response.read())
    finally:
        connection.close()


def ask_json(
    base: str, method: str, path: str, token: str | None, *, timeout: float = TIMEOUT
) -> tuple[int, Any]:
    """One request expecting a JSON answer: (status, body); :class:`Unreachable` with why
    when nothing answers, or something that is not gladd does."""
    url = base + path
    try:
        answer = request(base, method, path, token=token, timeout=timeout)
    except NotConnected as exc:
        raise Unreachable(
            f"no gladd answers at {base} ({exc}); is the daemon running, and listening "
            "there? (--url, or --admin-host / --admin-port / GLADD_ADMIN_PORT)"
        ) from None
    except TimeoutError:
        raise Unreachable(f"{url} did not answer within {timeout:g}s") from None
    except BadURL as exc:
        raise Unreachable(f"{url}: {exc}") from None
    except (http.client.HTTPException, OSError, NotSent) as exc:
        raise Unreachable(f"{url}: {type(exc).__name__}: {exc}") from None
    try:
        return answer.status, answer.json()
    except ValueError:
        raise Unreachable(
            f"{url} answered HTTP {answer.status}, but not with JSON: is something else "
            "listening on that port?"
        ) from None


def shown_time(moment: str | None, *, suffix: str = "") -> str:
    """An ISO 8601 time of an answer to the second, for a table ("-" for none)."""
    if not moment:
        return "-"
    try:
        return datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M:%S") + suffix
    except ValueError:
        return moment
