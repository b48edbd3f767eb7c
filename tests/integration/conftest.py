"""The store fixtures the integration tests share: each test once per backend (memory,
SQLite, PostgreSQL), on an empty store of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gladd.store import Store
from gladd.store.registry import BACKENDS
from tests.integration.test_store_contract import MAKERS, make_store


@pytest.fixture(
    params=[
        pytest.param(b.name, marks=MAKERS[b.name].marks if b.name in MAKERS else ())
        for b in BACKENDS
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Which store, and its URL; resolved outside the event loop (postgres_url needs that)."""
    return request.param, MAKERS[request.param].url(request, tmp_path)


@pytest.fixture
async def store(backend: tuple[str, str], anyio_backend: str) -> AsyncIterator[Store]:
    """The backend's store, opened and emptied (flow tables included); closed after."""
    opened = make_store(backend)
    await opened.open()
    await MAKERS[backend[0]].empty(backend[1])
    try:
        yield opened
    finally:
        await opened.close()
