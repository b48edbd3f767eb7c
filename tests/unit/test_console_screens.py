"""The console's screens on a real runtime and store, through the admin app: the overview's
counts by state and kind and its nodes, the tasks screen's filters and keyset pages, bulk
retry and cancel with the count to confirm, the dead screen's bulk retry, the policies
history's diff lines."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import httpx
import pytest

from gladd.console.views import diff_lines
from gladd.resilience import FakeClock
from gladd.runtime import Runtime
from gladd.settings import Settings
from gladd.store import TaskState
from gladd.store.base import Failed, NewTask, Released, TaskError
from gladd.store.memory import MemoryStore
from tests.unit.test_admin_breakers import POLICIES
from tests.unit.test_console_safety import admin as safety_admin
from tests.unit.test_console_safety import audit

pytestmark = pytest.mark.anyio
__all__ = ["audit"]  # fixtures

START = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


class Wall:
    """The runtime's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
async def runtime(tmp_path: Path, wall: Wall) -> AsyncIterator[Runtime]:
    store = MemoryStore()
    runtime = Runtime(
        Settings(state_dir=tmp_path, plugin_paths=(), node_name="n1"),
        POLICIES,
        store=store,
        clock=FakeClock(),
        now=wall,
    )
    await store.open()
    runtime.store_health.open()
    yield runtime
    await store.close()


def admin(runtime: Runtime, *, read_only: bool = False) -> httpx.AsyncClient:
    return safety_admin(runtime, token=None, read_only=read_only)


async def dead_tasks(runtime: Runtime, kind: str, messages: list[str]) -> list[int]:
    """Tasks of ``kind`` that died of one attempt each, with these error messages."""
    store = runtime.tasks.store
    made = await store.enqueue_many(
        [NewTask(kind=kind, max_attempts=1) for _ in messages], now=runtime.wall_now()
    )
    claimed = await store.claim(worker="w1", limit=len(messages), now=runtime.wall_now())
    by_id = {t.id: t for t in claimed}
    now = runtime.wall_now()
    await store.finish(
        [
            Failed(
                id=m.id,
                token=by_id[m.id].token,
                error=TaskError(type="RuntimeError", message=text, attempt=1, at=now),
                retry_at=None,
            )
            for m, text in zip(made, messages, strict=True)
        ],
        now=now,
    )
    return [m.id for m in made]


def row_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="task" data-id="(\d+)"', page)]


def href(page: str, element_id: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" id="{element_id}"', page)
    return unescape(found.group(1)) if found else None


async def test_the_overview_counts_tasks_by_state_and_kind_and_flags_a_stale_node(
    runtime: Runtime, wall: Wall
) -> None:
    await dead_tasks(runtime, "gladd.noop", ["boom", "bang"])
    await runtime.tasks.enqueue("gladd.sleep", {"seconds": 0}, delay=3600)
    async with admin(runtime) as client:
        page = (await client.get("/ui/")).text
        noop = re.search(r'<tr class="kind" data-kind="gladd.noop">(.*?)</tr>', page, re.S)
        assert noop is not None
        assert re.search(r'data-state="dead"><a [^>]*>2</a>', noop.group(1))
        assert "<td>2</td>" in noop.group(1)  # the total
        assert 'data-kind="gladd.sleep"' in page
        assert '<b data-state="dead">2</b>' in page
        assert 'data-id="w1"' in page
        assert "stale" not in re.search(r'<tr class="node[^"]*" data-id="w1"', page).group(0)

        wall.at += timedelta(seconds=31)  # past the 30 s lease
        later = (await client.get("/ui/")).text
        assert '<tr class="node stale" data-id="w1">' in later
        assert "31.0 s ago" in later


async def test_the_tasks_screen_filters_by_error_text_and_pages_on_with_the_filter_kept(
    runtime: Runtime,
) -> None:
    ids = await dead_tasks(runtime, "gladd.noop", [f"timeout {n}" for n in range(150)])
    await dead_tasks(runtime, "gladd.noop", ["refused"])
    async with admin(runtime) as client:
        first = (await client.get("/ui/tasks", params={"error": "TIMEOUT"})).text
        assert row_ids(first) == sorted(ids, reverse=True)[:100]
        assert href(first, "page-newer") is None
        after = href(first, "page-next")
        assert after is not None
        assert "error=TIMEOUT" in after

        second = (await client.get(after)).text
        assert row_ids(second) == sorted(ids, reverse=True)[100:]
        assert href(second, "page-next") is None
        assert "the last page" in second
        newer = href(second, "page-newer")
        assert newer is not None
        assert row_ids((await client.get(newer)).text) == row_ids(first)

        bad = (await client.get("/ui/tasks", params={"since": "yesterday"})).text
        assert "since: &#39;yesterday&#39; is neither a time nor a duration" in bad
        assert row_ids(bad) == []


async def test_a_bulk_retry_shows_the_count_first_and_refuses_a_set_that_grew(
    runtime: Runtime, audit: list[str]
) -> None:
    ids = await dead_tasks(runtime, "gladd.noop", ["boom"] * 3)
    await dead_tasks(runtime, "gladd.sleep", ["boom"])
    async with admin(runtime) as client:
        tasks = (await client.get("/ui/tasks", params={"kind": "gladd.noop"})).text
        preview_url = href(tasks, "bulk-retry")
        assert preview_url is not None
        preview = (await client.get(preview_url)).text
        assert "<b>retry 3 tasks?</b>" in preview
        assert 'name="expect" value="3"' in preview
        assert "hx-get" not in preview  # the count to confirm does not refresh under the eye
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', preview))
        form = {k: unescape(v) for k, v in form.items()}

        grown = await dead_tasks(runtime, "gladd.noop", ["boom"])
        refused = await client.post("/ui/tasks/bulk", data=form)
        assert refused.status_code == 409
        assert "4 tasks match now, more than the 3 expected" in refused.text
        assert (await runtime.tasks.store.counts())[TaskState.DEAD] == 5

        done = await client.post("/ui/tasks/bulk", data={**form, "expect": "4"})
        assert done.status_code == 303
        assert done.headers["location"].startswith("/ui/tasks?kind=gladd.noop")
        back = (await client.get(done.headers["location"])).text
        assert "retried 4 tasks" in back
    for task_id in [*ids, *grown]:
        task = await runtime.tasks.store.get(task_id)
        assert task is not None
        assert task.state is TaskState.PENDING
        assert (task.timeline[-1].event, task.timeline[-1].fields) == (
            "retried",
            {"by": "127.0.0.1 (no token)"},
        )
    assert (await runtime.tasks.store.counts())[TaskState.DEAD] == 1  # the other kind's
    assert any(line.startswith("admin action retry on tasks ") for line in audit)


async def test_the_dead_screen_retries_every_dead_task_after_its_count(runtime: Runtime) -> None:
    await dead_tasks(runtime, "gladd.noop", ["boom"] * 2)
    async with admin(runtime) as client:
        dead = (await client.get("/ui/dead")).text
        assert "Retry all 2 dead tasks" in dead
        preview = (await client.get(href(dead, "bulk-retry") or "")).text
        assert "<b>retry 2 tasks?</b>" in preview
        done = await client.post(
            "/ui/tasks/bulk",
            data={"action": "retry", "state": "dead", "expect": "2", "back": "/ui/dead"},
        )
        assert done.headers["location"] == "/ui/dead?done=retried+2+tasks"
        after = (await client.get(done.headers["location"])).text
        assert row_ids(after) == []
        assert "Retry all" not in after

        cancel_dead = (await client.get("/ui/tasks/bulk?action=cancel&state=dead")).text
        assert "filter.state: cancel acts on pending, running tasks only" in cancel_dead


async def test_read_only_mode_offers_no_bulk_action(runtime: Runtime) -> None:
    await dead_tasks(runtime, "gladd.noop", ["boom"])
    async with admin(runtime, read_only=True) as client:
        for screen in ("/ui/tasks", "/ui/dead"):
            page = (await client.get(screen)).text
            assert 'id="bulk-retry"' not in page, screen
        preview = (await client.get("/ui/tasks/bulk?action=retry&state=dead")).text
        assert "read-only" in preview
        assert "<form" not in preview.split("<main>")[1]
        refused = await client.post(
            "/ui/tasks/bulk", data={"action": "retry", "state": "dead", "expect": "1"}
        )
        assert refused.status_code == 403


def test_a_diff_is_shown_line_by_line_with_its_kind() -> None:
    diff = "--- generation 1\n+++ generation 2\n@@ -1,2 +1,2 @@\n a = 1\n-b = 2\n+b = 3\n"
    assert diff_lines(diff) == [
        ("file", "--- generation 1"),
        ("file", "+++ generation 2"),
        ("hunk", "@@ -1,2 +1,2 @@"),
        ("same", " a = 1"),
        ("del", "-b = 2"),
        ("add", "+b = 3"),
    ]


async def test_a_task_page_shows_its_timeline_times_and_durations(
    runtime: Runtime, wall: Wall
) -> None:
    store = runtime.tasks.store
    made = await store.enqueue(
        NewTask(kind="gladd.noop", payload={"password": "hunter2"}, max_attempts=1), now=wall.at
    )
    wall.at += timedelta(seconds=2)
    (claimed,) = await store.claim(worker="w1", limit=1, now=wall.at)
    wall.at += timedelta(seconds=3)
    error = TaskError(type="RuntimeError", message="boom", attempt=1, at=wall.at)
    await store.finish(
        [Failed(id=made.id, token=claimed.token, error=error, retry_at=None)], now=wall.at
    )
    async with admin(runtime) as client:
        page = (await client.get(f"/ui/tasks/{made.id}")).text
    events = re.findall(r'<tr class="entry" data-event="([^"]+)">', page)
    assert events == ["created", "claimed", "attempt started", "attempt ended"]
    assert "<b>node</b> w1" in page
    assert "<b>outcome</b> dead" in page
    assert "<b>error</b> RuntimeError: boom" in page
    assert f'<time id="started-at">{(START + timedelta(seconds=2)).isoformat()}</time>' in page
    assert f'<time id="finished-at">{(START + timedelta(seconds=5)).isoformat()}</time>' in page
    assert '<dd id="durations">waited 2s, ran 3s, in all 5s</dd>' in page
    assert "hunter2" not in page


async def test_a_long_timeline_shows_where_entries_were_dropped(
    runtime: Runtime, wall: Wall
) -> None:
    store = runtime.tasks.store
    made = await runtime.tasks.enqueue("gladd.noop", None)
    for _ in range(30):  # claimed, attempt started, attempt ended (released): 90 entries
        wall.at += timedelta(seconds=1)
        (claimed,) = await store.claim(worker="w1", limit=1, now=wall.at)
        await store.finish([Released(id=made.id, token=claimed.token, run_at=wall.at)], now=wall.at)
    task = await store.get(made.id)
    assert task is not None
    kept = len(task.timeline)
    async with admin(runtime) as client:
        page = (await client.get(f"/ui/tasks/{made.id}")).text
    dropped = re.search(r'<tr class="entry dropped" data-event="dropped">.*?</tr>', page, re.S)
    assert dropped is not None
    count = next(e.fields["count"] for e in task.timeline if e.event == "dropped")
    assert f"… {count} entries dropped between the first and the last ones" in dropped.group(0)
    assert len(re.findall(r'<tr class="entry[^"]*" data-event=', page)) == kept
