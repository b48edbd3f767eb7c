"""Which failures are worth retrying: an error (or HTTP status) → a retry class, or None.

The classes are those of ``retry.*.on``: ``connect``, ``timeout``, ``reset``, ``5xx``,
``408``, ``429``. An exception outside the known transient families (and outside the
policy's named ``exceptions``) is *never* retried and never counts against a breaker: a
``KeyError`` from a bug will not get better by asking again, and says nothing about the
health of the service.

Known families are matched by qualified class name along the MRO, so optional drivers
need not be imported, and the lookup is cached per exception type. Besides those below, a
store's driver errors are known through :func:`register_transient`, which the store
registry (:mod:`gladd.store.registry`) calls for every store it lists.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gladd.errors import AttemptTimeout

RetryClass = Literal["connect", "timeout", "reset", "5xx", "408", "429"]

_KNOWN: dict[str, RetryClass] = {
    # httpx: the request never reached the server, so even a POST is safe to repeat.
    "httpx.ConnectError": "connect",
    "httpx.ConnectTimeout": "connect",
    "httpx.PoolTimeout": "connect",
    "httpx.TimeoutException": "timeout",
    "httpx.ReadError": "reset",
    "httpx.WriteError": "reset",
    "httpx.RemoteProtocolError": "reset",
    # the standard library and anyio
    "builtins.ConnectionRefusedError": "connect",
    "socket.gaierror": "connect",
    "builtins.ConnectionResetError": "reset",
    "builtins.ConnectionAbortedError": "reset",
    "builtins.BrokenPipeError": "reset",
    "anyio.BrokenResourceError": "reset",
    "builtins.TimeoutError": "timeout",
}

# RFC 9110 §15.6: 501 and 505 say the server will *never* handle the request this way.
_PERMANENT_5XX = frozenset({501, 505})


def status_class(status: int) -> RetryClass | None:
    """The retry class of an HTTP status code, or None for one never worth retrying."""
    if status == 429:
        return "429"
    if status == 408:
        return "408"
    if 500 <= status <= 599 and status not in _PERMANENT_5XX:
        return "5xx"
    return None


class RetryableStatus(Exception):
    """An HTTP response whose status is a failure worth retrying (raised by the transport)."""

    def __init__(self, response: Any, status: int, retry_after: float | None) -> None:
        self.response = response
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}")


def _qualname(cls: type) -> str:
    module = cls.__module__
    if module == "anyio._core._exceptions":
        module = "anyio"
    elif module.startswith("httpx."):
        module = "httpx"
    return f"{module}.{cls.__qualname__}"


_by_type: dict[type, RetryClass | None] = {}


def register_transient(families: Mapping[str, RetryClass]) -> None:
    """Know more exception families (qualified class name → retry class), e.g. a store
    driver's; a name already known keeps its class."""
    added = {name: found for name, found in families.items() if name not in _KNOWN}
    if added:
        _KNOWN.update(added)
        _by_type.clear()  # an exception type seen before may belong to a new family


def known_class(exc: BaseException) -> RetryClass | None:
    """The retry class of ``exc`` by its family alone (no policy), or None if unknown."""
    cls = type(exc)
    try:
        return _by_type[cls]
    except KeyError:
        pass
    found: RetryClass | None = None
    if issubclass(cls, Exception):  # never CancelledError, KeyboardInterrupt, SystemExit
        for base in cls.__mro__:
            found = _KNOWN.get(_qualname(base))
            if found is not None:
                break
    _by_type[cls] = found
    return found


def error_class(exc: BaseException) -> RetryClass | None:
    """Like :func:`known_class`, also reading HTTP statuses carried by an exception."""
    if isinstance(exc, RetryableStatus):
        return status_class(exc.status)
    if isinstance(exc, AttemptTimeout):
        return "timeout"
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and _qualname(type(exc)) == "httpx.HTTPStatusError":
        return status_class(status)
    return known_class(exc)


def _resolve(name: str) -> type[BaseException] | None:
    module, _, attr = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Classifier:
    """A policy's view: which errors it retries (``cause``) and which are transient at all.

    ``exceptions`` are dotted names; each is resolved by import when possible (so an alias
    such as ``asyncpg.PostgresConnectionError`` works) and also matched by qualified name.
    """

    on: frozenset[str]
    exceptions: tuple[str, ...] = ()
    _types: tuple[type[BaseException], ...] = field(init=False, default=())
    _names: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        types = tuple(t for t in map(_resolve, self.exceptions) if t is not None)
        object.__setattr__(self, "_types", types)
        object.__setattr__(self, "_names", frozenset(self.exceptions))

    @classmethod
    def of(cls, on: Iterable[str], exceptions: Iterable[str] = ()) -> Classifier:
        return cls(on=frozenset(on), exceptions=tuple(exceptions))

    def named(self, exc: BaseException) -> str | None:
        if not isinstance(exc, Exception):
            return None
        if self._types and isinstance(exc, self._types):
            return _qualname(type(exc))
        if self._names:
            for base in type(exc).__mro__:
                if _qualname(base) in self._names:
                    return _qualname(base)
        return None

    def cause(self, exc: BaseException) -> str | None:
        """The label of ``exc`` if this policy retries it, else None."""
        found = error_class(exc)
        if found is not None and found in self.on:
            return found
        return self.named(exc)

    def transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the service is unhealthy (counts against a breaker)."""
        return error_class(exc) is not None or self.named(exc) is not None


DEFAULT_CLASSIFIER = Classifier.of(("connect", "timeout", "reset", "5xx", "408", "429"))
