"""Driver (and guard) errors of the PostgreSQL store as one precise
:class:`~gladd.errors.StoreError`; :mod:`gladd.store.postgres` draws the tree."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]

from gladd.errors import AttemptTimeout, ResilienceTimeout, StoreError, StoreUnavailable

_UNAVAILABLE_HINTS: tuple[tuple[str, str], ...] = (
    ("InvalidPasswordError", "the server rejected the password: fix it in the database URL"),
    (
        "InvalidAuthorizationSpecificationError",
        "the server refused this user: fix the user in the database URL or pg_hba.conf",
    ),
    (
        "InvalidCatalogNameError",
        "the database does not exist: create it (createdb) or fix its name in the URL",
    ),
    (
        "TooManyConnectionsError",
        "the server has no connection slots left: lower pool_max_size on the nodes "
        "or raise max_connections on the server",
    ),
    ("BreakerOpen", "the database circuit breaker is open after repeated failures"),
    ("CannotConnectNowError", "the server is starting up or shutting down: try again shortly"),
    ("AdminShutdownError", "the server is shutting down: try again once it is back"),
    ("ConnectionDoesNotExistError", "the connection was lost mid-query: server restart or network"),
    ("ConnectionFailureError", "the connection failed: check the server and the network"),
    ("PostgresConnectionError", "the connection failed: check the server and the network"),
    ("ConnectionRefusedError", "connection refused: is PostgreSQL running and listening there?"),
    ("gaierror", "the host name does not resolve: fix the host in the database URL"),
    ("ConnectionResetError", "the connection was reset: server restart or network"),
    ("InterfaceError", "the connection is no longer usable: server restart or network"),
)


def map_error(op: str, exc: BaseException, url: str, timeout: float) -> StoreError:
    """One precise StoreError for a driver (or guard) error; never includes a password."""
    root: BaseException = exc
    given_up = ""
    last = getattr(exc, "last", None)  # the guard's RetriesExhausted carries the last error
    if isinstance(last, BaseException):
        given_up = f" (gave up: {exc})"
        root = last
    if isinstance(root, StoreError):
        return type(root)(f"{root}{given_up}")
    detail = f"{type(root).__name__}: {root}"
    if isinstance(root, AttemptTimeout):  # the database guard's attempt: query_timeout
        timeout = root.after
    elif isinstance(root, ResilienceTimeout):  # the retry policy's deadline
        return StoreError(f"PostgreSQL store {url}: {op} gave up: {root}")
    if isinstance(root, TimeoutError | asyncpg.QueryCanceledError):
        return StoreError(
            f"PostgreSQL store {url}: {op} timed out after {timeout:g}s (query_timeout); "
            f"the server is overloaded or a lock is held too long{given_up}"
        )
    names = {cls.__name__ for cls in type(root).__mro__}
    for name, hint in _UNAVAILABLE_HINTS:
        if name in names:
            return StoreUnavailable(f"PostgreSQL store {url}: {op}: {hint} ({detail}){given_up}")
    if isinstance(root, OSError):
        return StoreUnavailable(
            f"PostgreSQL store {url}: {op}: cannot connect ({detail}); check the host, port "
            f"and network{given_up}"
        )
    if isinstance(root, asyncpg.UniqueViolationError):
        return StoreError(
            f"PostgreSQL store {url}: {op}: another unfinished task holds the same unique_key "
            f"({root.detail or root}){given_up}"
        )
    return StoreError(f"PostgreSQL store {url}: {op} failed: {detail}{given_up}")
