"""The doorbell that lets a CLI or an application wake the daemon waiting on one SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from gladd.store import NewTask
from gladd.store.sqlite import store as sqlite_store
from gladd.store.sqlite.doorbell import SUPPORTED, Doorbell
from gladd.store.sqlite.store import SQLiteStore

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not SUPPORTED, reason="abstract Unix sockets are Linux's"),
]


@pytest.fixture
def bells(tmp_path: Path) -> Iterator[tuple[Doorbell, Doorbell]]:
    door, visitor = Doorbell(str(tmp_path / "a.db")), Doorbell(str(tmp_path / "a.db"))
    yield door, visitor
    door.close()
    visitor.close()


async def test_a_ring_wakes_the_listener_and_is_kept_until_it_waits(
    bells: tuple[Doorbell, Doorbell],
) -> None:
    door, visitor = bells
    assert door.listen()
    visitor.ring()
    visitor.ring()
    with anyio.fail_after(2):
        await door.wait()  # rung before it waited: returns at once, both rings read
    with anyio.move_on_after(0.1) as quiet:
        await door.wait()
    assert quiet.cancelled_caught, "the rings were drained by the first wait"

    async def ring_soon() -> None:
        await anyio.sleep(0.05)
        visitor.ring()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ring_soon)
            await door.wait()


def test_a_ring_nobody_hears_is_dropped_quietly(tmp_path: Path) -> None:
    lonely = Doorbell(str(tmp_path / "nobody.db"))
    try:
        lonely.ring()  # ECONNREFUSED inside: an enqueue must never fail for it
    finally:
        lonely.close()


def test_one_file_has_one_bell_named_after_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    first = Doorbell(str(tmp_path / "real" / "x.db"))
    second = Doorbell(str(tmp_path / "link" / "x.db"))
    other = Doorbell(str(tmp_path / "real" / "y.db"))
    try:
        assert first.address == second.address != other.address
        assert first.listen()
        assert not second.listen(), "the same file's bell is taken"
        assert other.listen()
        first.close()
        assert second.listen(), "free again once its holder lets go"
    finally:
        for bell in (first, second, other):
            bell.close()


async def test_a_store_waiting_for_work_is_rung_by_another_stores_enqueue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The idle check is pushed out of the way: only the doorbell can wake the waiter in time.
    monkeypatch.setattr(sqlite_store, "EXTERNAL_CHECK", (60.0, 60.0))
    db = tmp_path / "tasks.db"
    daemon, cli = SQLiteStore(db), SQLiteStore(db)
    await daemon.open()
    await cli.open()
    try:

        async def enqueue_soon() -> None:
            await anyio.sleep(0.1)
            await cli.enqueue(NewTask(kind="k"), now=datetime.now(UTC))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(enqueue_soon)
                assert await daemon.wait_for_work(30) is True
        assert await cli.wait_for_work(0) is True  # its own enqueue's in-process wake-up
        with anyio.fail_after(5):
            assert await cli.wait_for_work(0.1) is False  # the bell is the daemon's
    finally:
        await cli.close()
        await daemon.close()
