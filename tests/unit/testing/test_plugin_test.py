"""gladd.testing itself: a plugin's handler through the real host, transport and attempt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from pydantic import BaseModel

from gladd import TaskContext
from gladd.errors import PluginLoadError, TaskRejected
from gladd.plugins import EnqueueContext, Plugin, TaskKind, raise_for_status
from gladd.store import TaskState
from gladd.testing import EPOCH, PluginTest, TaskFailed

pytestmark = pytest.mark.anyio

POLICIES = """
[executor]
retry = "task"

[retry.task]
attempts = 3
backoff = "constant"
base_delay = "30s"
max_delay = "30s"
jitter = "none"
deadline = "1h"

[retry.api]
attempts = 3
backoff = "exponential"
base_delay = "1s"
max_delay = "10s"
jitter = "none"

[breaker.api]
failures = 3
open_for = "60s"

[services.example]
retry = "api"
breaker = "api"
timeout = "200ms"

[plugins.example]
base_url = "https://api.example.com"
"""


class Settings(BaseModel):
    base_url: str


class Ping(BaseModel):
    path: str = "/"


async def ping(ctx: TaskContext, payload: Ping) -> dict[str, object]:
    response = await ctx.http["example"].get(ctx.settings.base_url + payload.path)
    raise_for_status(response)
    return {"status": response.status_code, "body": response.json()}


def no_admin(ctx: EnqueueContext, payload: Ping) -> None:
    if payload.path.startswith("/admin"):
        raise ValueError("example: /admin is not for tasks")


async def chain(ctx: TaskContext, payload: Ping) -> int:
    return await ctx.enqueue("example.ping", {"path": payload.path})


EXAMPLE = Plugin(
    name="example",
    services=("example",),
    settings=Settings,
    kinds=[
        TaskKind(name="example.ping", handler=ping, payload=Ping, check=no_admin),
        TaskKind(name="example.chain", handler=chain, payload=Ping),
    ],
)


def answers(*statuses: int) -> Callable[[httpx.Request], httpx.Response]:
    """A service answering these statuses in turn, then 200."""
    left = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        status = left.pop(0) if left else 200
        return httpx.Response(status, json={"path": request.url.path})

    return handler


async def test_a_handler_runs_on_the_mocked_service_and_its_requests_are_recorded() -> None:
    async with PluginTest(EXAMPLE, policies=POLICIES, services={"example": answers()}) as t:
        result = await t.run("example.ping", {"path": "/users"})
        sent = t.requests("example")
    assert result == {"status": 200, "body": {"path": "/users"}}
    assert [str(r.url) for r in sent] == ["https://api.example.com/users"]
    assert sent[0].headers["user-agent"].startswith("gladd/")


async def test_the_services_retry_policy_applies_and_its_waits_pass_on_the_fake_clock() -> None:
    async with PluginTest(EXAMPLE, policies=POLICIES, services={"example": answers(503, 502)}) as t:
        started = anyio.current_time()
        result = await t.run("example.ping")
        assert len(t.requests("example")) == 3
        assert t.now() - EPOCH == timedelta(seconds=3)  # backoff 1s, then 2s
    assert result["status"] == 200
    assert anyio.current_time() - started < 1.0  # the backoff did not really wait


async def test_the_breaker_opens_fails_fast_and_a_probe_after_open_for_closes_it() -> None:
    failing = answers(*[503] * 3)
    async with PluginTest(EXAMPLE, policies=POLICIES, services={"example": failing}) as t:
        first = await t.attempt("example.ping")
        assert len(t.requests("example")) == 3  # its third failure opened the breaker
        refused = await t.attempt("example.ping")
        assert len(t.requests("example")) == 3  # failed fast, nothing sent
        t.advance(60)
        probe = await t.run("example.ping")
    assert first.state is TaskState.PENDING  # the task retries later
    assert first.errors[-1].message == 'example: service example answered 503 {"path":"/"}'
    assert (refused.state, refused.attempt) == (TaskState.PENDING, 0)  # postponed: not spent
    assert probe["status"] == 200


async def test_an_open_breaker_postpones_a_bound_kind_in_the_executor() -> None:
    bound = POLICIES + '\n[tasks."example.ping"]\nservice = "example"\n'
    failing = answers(*[503] * 3)
    async with PluginTest(EXAMPLE, policies=bound, services={"example": failing}) as t:
        await t.attempt("example.ping")
        held = await t.attempt("example.ping")
        assert (held.state, held.attempt) == (TaskState.PENDING, 0)
        assert len(t.requests("example")) == 3
        assert t.runtime is not None
        assert t.runtime.executor.statistics().postponed == 1  # held back by the executor
        t.advance(60)
        result = await t.run("example.ping")  # the probe: the executor's and its call's
    assert result["status"] == 200


async def test_a_service_that_does_not_answer_in_time_is_a_timeout() -> None:
    async def hangs(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(200)

    async with PluginTest(EXAMPLE, policies=POLICIES, services={"example": hangs}) as t:
        with pytest.raises(TaskFailed) as failed:
            await t.run("example.ping")
    assert "did not answer in time" in str(failed.value)
    assert failed.value.task.state is TaskState.PENDING


async def test_a_refusal_is_dead_with_the_services_message() -> None:
    def missing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "Not Found"})

    async with PluginTest(EXAMPLE, policies=POLICIES, services={"example": missing}) as t:
        with pytest.raises(TaskFailed) as failed:
            await t.run("example.ping")
    assert str(failed.value) == (
        "task 1 (example.ping) did not succeed (dead): gladd.plugins.errors.ServiceRefused: "
        "example: service example answered 404 Not Found"
    )


async def test_payload_validation_and_the_enqueue_check_refuse_before_storing() -> None:
    async with PluginTest(EXAMPLE, policies=POLICIES, services={"example": answers()}) as t:
        with pytest.raises(TaskRejected, match="/admin is not for tasks"):
            await t.run("example.ping", {"path": "/admin/users"})
        with pytest.raises(TaskRejected, match=r"payload for example\.ping is invalid"):
            await t.run("example.ping", {"path": 3})
        assert await t.store.list() == []


async def test_retries_and_follow_ups_run_when_due() -> None:
    async with PluginTest(
        EXAMPLE, policies=POLICIES, services={"example": answers(*[503] * 3)}
    ) as t:
        chained = await t.run("example.chain", {"path": "/x"})
        (follow_up,) = await t.run_due()  # the task the handler enqueued
        assert follow_up.id == chained
        assert follow_up.state is TaskState.PENDING  # three 503s: retry in 30s
        assert await t.run_due() == []
        t.advance(61)  # past the retry's 30s and the breaker's open_for
        (again,) = await t.run_due()
    assert (again.state, again.attempt) == (TaskState.SUCCEEDED, 2)


async def test_a_service_without_a_handler_fails_saying_so() -> None:
    async with PluginTest(EXAMPLE, policies=POLICIES) as t:
        with pytest.raises(TaskFailed, match=r"no handler for it: pass services=\{'example'"):
            await t.run("example.ping")


async def test_settings_the_plugin_cannot_run_under_are_refused_at_start() -> None:
    broken = POLICIES.replace('base_url = "https://api.example.com"', "base_url = 3")
    with pytest.raises(PluginLoadError, match=r"plugins\.example\.base_url"):
        async with PluginTest(EXAMPLE, policies=broken):
            pass


async def test_modules_and_module_files_are_taken_too(tmp_path: Path) -> None:
    module = tmp_path / "pinger.py"
    module.write_text(
        "from gladd.plugins import Plugin, TaskKind\n"
        "async def pong(ctx, payload):\n    return 'pong'\n"
        "plugin = Plugin(name='pinger', kinds=[TaskKind(name='pinger.pong', handler=pong)])\n"
    )
    async with PluginTest(module) as t:
        assert await t.run("pinger.pong") == "pong"
    with pytest.raises(TypeError, match="Plugin objects, modules"):
        PluginTest(object())  # type: ignore[arg-type]
