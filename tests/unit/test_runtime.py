"""The one wiring: built without I/O, plugins imported at start-up, the store's open state
driving what /tasks, health and metrics say."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gladd.admin.app import create_app
from gladd.policies import parse_policies
from gladd.runtime import Runtime
from gladd.settings import Settings
from gladd.store.memory import MemoryStore

POLICIES = parse_policies(b"", source="policies.toml").policies

PLUGIN = """
from pathlib import Path
Path(__file__).with_suffix(".imported").write_text("yes")

from gladd.plugins import Plugin, TaskKind

async def pong(ctx, payload):
    return "pong"

plugin = Plugin(name="pinger", kinds=[TaskKind(name="pinger.pong", handler=pong)])
"""


def test_building_touches_nothing_and_plugins_load_at_start_up(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "pinger.py").write_text(PLUGIN)
    state = tmp_path / "state"
    settings = Settings(state_dir=state, plugin_paths=(plugins,))
    runtime = Runtime(settings, POLICIES, entry_points=False)
    assert not state.exists()  # no store file, no scratch directory
    assert not (plugins / "pinger.imported").exists()  # not imported yet
    assert runtime.executor.statistics().claimed == 0  # the executor exists from the start
    assert runtime.kinds.get("pinger.pong") is None
    assert runtime.single_process  # the default store is SQLite
    runtime.load_plugins()
    assert (plugins / "pinger.imported").read_text() == "yes"
    assert runtime.kinds.get("pinger.pong") is not None
    assert "pinger" in runtime.plugins.plugins


@pytest.mark.anyio
async def test_until_the_store_opens_tasks_answer_503_and_health_says_why(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    runtime = Runtime(Settings(state_dir=tmp_path, plugin_paths=()), POLICIES, store=store)
    app = create_app(
        runtime.board, tasks=runtime.tasks, store_open=lambda: runtime.store_health.opened
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://admin"
    ) as client:
        closed = await client.get("/tasks")
        runtime.health_checker.check_local()
        checks = runtime.board.report()["checks"]
        scrape = runtime.metrics.render()[0].decode()
        assert closed.status_code == 503
        assert closed.json() == {"error": "the task store is not open yet (database unavailable?)"}
        assert checks["database:connection"][0]["output"] == "not opened yet"
        assert checks["executor:running"][0]["output"] == (
            "not running (the task store is not open yet)"
        )
        assert "gladd_tasks_running" not in scrape

        await store.open()
        runtime.store_health.open()
        opened = await client.get("/tasks")
        runtime.health_checker.check_local()
        checks = runtime.board.report()["checks"]
        assert opened.status_code == 200
        assert opened.json() == {"tasks": [], "next": None}
        assert checks["database:connection"][0]["output"] == "open"
        assert checks["executor:running"][0]["output"] == "0 of 10 slots"
        assert "gladd_tasks_running 0.0" in runtime.metrics.render()[0].decode()
        await store.close()


def test_a_reload_with_a_schedule_of_no_known_kind_is_refused(tmp_path: Path) -> None:
    runtime = Runtime(Settings(state_dir=tmp_path / "state"), POLICIES, entry_points=False)
    check = runtime.reloader.check
    assert check is not None
    good = parse_policies(b'[schedules.s]\nevery = "1m"\nkind = "gladd.noop"\n', source="p")
    assert check(good.policies) == []
    bad = parse_policies(b'[schedules.s]\nevery = "1m"\nkind = "crm.sync"\n', source="p")
    [problem] = check(bad.policies)
    assert problem.path == "schedules.s.kind"
    assert "no task kind 'crm.sync' is known" in problem.message


def test_a_reload_partitioning_a_kind_by_a_field_its_payload_lacks_is_refused(
    tmp_path: Path,
) -> None:
    runtime = Runtime(Settings(state_dir=tmp_path / "state"), POLICIES, entry_points=False)
    check = runtime.reloader.check
    assert check is not None
    text = '[tasks."gladd.sleep"]\nconcurrency = 2\npartition = "{}"\n'
    good = parse_policies(text.format("seconds").encode(), source="p")
    assert check(good.policies) == []
    bad = parse_policies(text.format("account_id").encode(), source="p")
    [problem] = check(bad.policies)
    assert problem.path == 'tasks."gladd.sleep".partition'
    assert "kind gladd.sleep's payload has no field 'account_id'" in problem.message
