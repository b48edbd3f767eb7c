"""Fixtures shared by every test: the anyio backend and a throwaway PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def no_host_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings never come from the host's /etc/gladd/gladd.env (read by default when it
    exists): a test that wants an env file names it."""
    monkeypatch.setenv("GLADD_ENV_FILE", "")


@pytest.fixture(autouse=True)
def own_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``gladd check`` keeps its verdicts in a cache directory of each test's own (in
    process and in the ``gladd`` processes a test starts), never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test run's own, dropped at the end.

    The server comes from GLADD_TEST_DATABASE_URL. Unreachable, the tests that need it
    skip on a developer's machine and fail in CI (CI=true): CI must never pass by skipping.
    """
    server = os.environ.get("GLADD_TEST_DATABASE_URL", DEFAULT_SERVER)
    name = f"gladd_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL at {server} is not usable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield _with_database(server, name)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
