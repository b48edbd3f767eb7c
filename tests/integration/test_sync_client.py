"""The blocking client of applications without an event loop (a Flask or Django app)."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

import gladd
from gladd.client import Client
from gladd.store.factory import store_from_url

WAIT = 10.0
"""Seconds a call may take before the test calls it a hang."""


def made(url: str) -> str:
    """The store at ``url``, created as ``gladd db migrate`` (or the daemon) does."""

    async def migrate() -> None:
        store = store_from_url(url)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return made(f"sqlite:///{tmp_path / 'gladd.db'}")
    return made(request.getfixturevalue("postgres_url"))


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``'s result (or its exception) from a daemon thread, failing the test if it
    has neither after ``seconds``: a deadlock fails, it does not hang the run."""
    answers: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def run() -> None:
        try:
            answers.put((True, call()))
        except BaseException as exc:  # handed to the test thread, raised there
            answers.put((False, exc))

    threading.Thread(target=run, daemon=True).start()
    try:
        ok, value = answers.get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"no answer within {seconds:g}s: a deadlock")
    if not ok:
        raise value
    return value


def test_enqueue_and_get_from_many_threads(url: str) -> None:
    ids: list[int] = []
    lock = threading.Lock()
    with gladd.SyncClient(url) as client:

        def worker(n: int) -> None:
            mine = [client.enqueue("gladd.noop", {"thread": n, "i": i}) for i in range(50)]
            with lock:
                ids.extend(mine)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 3)
        assert len(ids) == len(set(ids)) == 400
        stored = [client.get(task_id) for task_id in ids]
    assert {(t.payload["thread"], t.payload["i"]) for t in stored} == {
        (n, i) for n in range(8) for i in range(50)
    }
    assert all(t.kind == "gladd.noop" and t.state is gladd.TaskState.PENDING for t in stored)


def test_durations_as_text_and_as_seconds_are_the_same(url: str) -> None:
    with gladd.SyncClient(url) as client:
        by_text = client.get(client.enqueue("gladd.noop", delay="1m30s", timeout="500ms"))
        by_seconds = client.get(client.enqueue("gladd.noop", delay=90, timeout=0.5))
    for task in (by_text, by_seconds):
        assert (task.run_at - task.created_at).total_seconds() == 90.0
        assert task.timeout == 0.5


def test_bad_input_is_refused_with_the_async_clients_messages(url: str) -> None:
    with gladd.SyncClient(url) as client:
        with pytest.raises(gladd.TaskRejected) as refused:
            client.enqueue("gladd.noop", timeout="soon")
        with pytest.raises(gladd.TaskRejected, match="delay must be at least 0s"):
            client.enqueue("gladd.noop", delay=-5)
        with pytest.raises(gladd.TaskRejected, match="unknown task kind 'nope'"):
            client.enqueue("nope")
        with pytest.raises(gladd.UnknownTask, match="no task with id 123456"):
            client.get(123456)
        assert client.enqueue("gladd.noop") > 0  # refusals leave the client usable
    assert str(refused.value) == (
        "timeout: 'soon' is not a duration: use a number and a unit (ms, s, m, h, d), "
        'like "500ms", "5s", "15m", "1h30m" or "7d"'
    )


def test_inside_a_running_event_loop_it_refuses_at_once(url: str) -> None:
    client = gladd.SyncClient(url)
    try:
        client.enqueue("gladd.noop")  # opened: its own loop runs in its own thread

        async def app() -> list[BaseException]:
            refusals: list[BaseException] = []
            for call in (
                lambda: client.enqueue("gladd.noop"),
                lambda: client.get(1),
                lambda: gladd.SyncClient(url).__enter__(),
            ):
                try:
                    call()
                except gladd.SyncClientError as exc:
                    refusals.append(exc)
            return refusals

        refusals = within(WAIT, lambda: asyncio.run(app()))
    finally:
        client.close()
    assert len(refusals) == 3
    for refusal in refusals:
        assert isinstance(refusal, RuntimeError)
        assert isinstance(refusal, gladd.GladdError)
        assert "inside a running event loop" in str(refusal)
        assert "use gladd.Client there, with await" in str(refusal)


def test_closed_it_refuses_calls_and_closing_again_is_harmless(url: str) -> None:
    client = gladd.SyncClient(url)
    task_id = client.enqueue("gladd.noop")
    client.close()
    client.close()
    with pytest.raises(gladd.SyncClientError, match="SyncClient is closed: make a new one"):
        client.get(task_id)
    never_opened = gladd.SyncClient(url)
    never_opened.close()
    with pytest.raises(gladd.SyncClientError, match="is closed"):
        never_opened.enqueue("gladd.noop")


def test_leaving_with_stops_its_thread_and_closes_the_store(url: str) -> None:
    before = set(threading.enumerate())
    connections_before = _connections(url)
    with gladd.SyncClient(url) as client:
        client.enqueue("gladd.noop")
        assert set(threading.enumerate()) - before  # the client's loop thread
        assert _connections(url) > connections_before
    assert not set(threading.enumerate()) - before
    assert _connections(url) == connections_before


def test_a_store_that_is_not_there_is_refused_on_first_use(tmp_path: Path) -> None:
    db = tmp_path / "state" / "gladd.db"
    before = set(threading.enumerate())
    client = gladd.SyncClient(f"sqlite:///{db}")
    with pytest.raises(gladd.StoreNotFound, match=f"no SQLite database at {db}"):
        client.enqueue("gladd.noop")
    assert not set(threading.enumerate()) - before  # the failed open stopped its loop
    client.close()
    assert not (tmp_path / "state").exists()


def test_enqueue_many_stores_every_item_in_order(url: str) -> None:
    with gladd.SyncClient(url) as client:
        ids = client.enqueue_many(
            {"kind": "gladd.noop", "payload": {"i": i}, "delay": "1s"} for i in range(5)
        )
        tasks = [client.get(task_id) for task_id in ids]
    assert [t.payload for t in tasks] == [{"i": i} for i in range(5)]


def test_enqueue_many_hands_the_items_to_the_async_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[Any] = []

    async def enqueue_many(self: Client, items: Any) -> list[int]:
        handed.append(items)
        return [await self.enqueue(**item) for item in items]

    monkeypatch.setattr(Client, "enqueue_many", enqueue_many, raising=False)
    with gladd.SyncClient(made(f"sqlite:///{tmp_path / 'gladd.db'}")) as client:
        ids = client.enqueue_many({"kind": "gladd.noop", "payload": {"i": i}} for i in range(3))
        assert [client.get(task_id).payload for task_id in ids] == [{"i": i} for i in range(3)]
    assert handed == [[{"kind": "gladd.noop", "payload": {"i": i}} for i in range(3)]]


def test_an_application_that_never_closes_its_client_still_exits(tmp_path: Path) -> None:
    url = made(f"sqlite:///{tmp_path / 'gladd.db'}")
    script = (
        f"import gladd\nclient = gladd.SyncClient({url!r})\nprint(client.enqueue('gladd.noop'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def _connections(url: str) -> int:
    """Connections open to the PostgreSQL database of ``url``; for a SQLite store, this
    process's open files of the database (the file, its WAL and shared memory)."""
    if url.startswith("sqlite:///"):
        database = url.removeprefix("sqlite:///")
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if _target(fd).startswith(database))
    name = urlsplit(url).path.lstrip("/")

    async def count() -> int:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> "
                "pg_backend_pid()",
                name,
            )
        finally:
            await conn.close()
        return n

    return asyncio.run(count())


def _target(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed meanwhile (the listing's own descriptor)
        return ""
