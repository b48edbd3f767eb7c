"""The ``http`` plugin against a local webhook receiver, through the real executor."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from gladd.errors import TaskRejected
from gladd.resilience import BreakerState
from gladd.store import NewTask, TaskState
from tests.integration.fakes import webhook
from tests.integration.fakes.harness import policies_for, running
from tests.integration.fakes.server import Faults, serve

pytestmark = pytest.mark.anyio

FAULTS = Faults()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(webhook.app(FAULTS)) as url:
        yield url


@pytest.fixture
def url(server: str) -> Iterator[str]:
    FAULTS.reset()
    yield server
    FAULTS.reset()


def post(url: str, **extra: object) -> dict[str, object]:
    return {"method": "POST", "url": f"{url}/orders", "json": {"order": 17}, **extra}


async def test_success(url: str, tmp_path: Path) -> None:
    async with running(policies_for("hooks"), tmp_path) as run:
        task = await run.run("http.request", post(url))
    assert task.state is TaskState.SUCCEEDED, task.errors
    assert task.result == {
        "status": 201,
        "service": "hooks",
        "headers": {"content-type": "application/json"},
        "body": {"method": "POST", "path": "/orders", "length": 12},
    }
    assert FAULTS.seen[0].headers["content-type"] == "application/json"


async def test_5xx_then_success_is_retried(url: str, tmp_path: Path) -> None:
    # POST is not idempotent: the transport does not repeat it, the executor's retry does.
    FAULTS.script = [500]
    async with running(policies_for("hooks", retry_post=False), tmp_path) as run:
        task = await run.run("http.request", post(url))
    assert task.state is TaskState.SUCCEEDED
    assert task.attempt == 2
    assert task.errors[0].type == "gladd.plugins.errors.ServiceUnavailable"
    assert task.errors[0].message == (
        "http: service hooks answered 500 webhook receiver failed with 500"
    )
    # A GET is retried inside the transport: one attempt, two requests.
    FAULTS.reset()
    FAULTS.script = [502]
    async with running(policies_for("hooks", retry_post=False), tmp_path) as run:
        task = await run.run("http.request", {"method": "GET", "url": f"{url}/status"})
    assert (task.state, task.attempt, FAULTS.count()) == (TaskState.SUCCEEDED, 1, 2)


async def test_429_with_retry_after_is_honoured(url: str, tmp_path: Path) -> None:
    FAULTS.script = [429]
    FAULTS.retry_after = "1"
    started = time.monotonic()
    async with running(policies_for("hooks"), tmp_path) as run:
        task = await run.run("http.request", post(url))
    assert task.state is TaskState.SUCCEEDED
    assert time.monotonic() - started >= 0.95
    assert FAULTS.count() == 2


async def test_hang_times_out_then_the_task_retries(url: str, tmp_path: Path) -> None:
    FAULTS.script = ["hang", "hang"]
    async with running(policies_for("hooks"), tmp_path) as run:
        task = await run.run("http.request", {"method": "GET", "url": f"{url}/slow"})
    assert task.state is TaskState.SUCCEEDED
    assert task.attempt == 2
    assert task.errors[0].type == "gladd.plugins.errors.ServiceTimeout"
    assert task.errors[0].message.startswith("http: service hooks did not answer in time")


async def test_breaker_opens_fails_fast_then_recovers_half_open(url: str, tmp_path: Path) -> None:
    FAULTS.always = 500
    async with running(policies_for("hooks"), tmp_path) as run:
        await run.enqueue("http.request", post(url))
        # The server counts a request before it answers: wait for the breaker itself.
        await _until(lambda: run.breaker_state("hooks") is BreakerState.OPEN)
        assert FAULTS.count() == 2  # opened by the threshold's two failures, no more
        calls = FAULTS.count()
        second = await run.enqueue("http.request", post(url))
        await _sleep(0.1)
        # The open circuit fails fast: no request left, the task waits for the probe.
        assert FAULTS.count() == calls
        assert (await run.wait(second, TaskState.PENDING)).attempt == 0
        FAULTS.always = None
        done = await run.wait(second, timeout=5)
        assert done.state is TaskState.SUCCEEDED
        assert run.breaker_state("hooks") is BreakerState.CLOSED


async def test_breaker_static_fallback_answers_while_open(url: str, tmp_path: Path) -> None:
    extra = '\n[breaker.api.fallback_value]\nstatus = 202\nbody = "queued upstream"\n'
    p = policies_for("hooks", extra=extra)
    p = p.model_copy(
        update={"breaker": {"api": p.breaker["api"].model_copy(update={"fallback": "static"})}}
    )
    FAULTS.always = 503
    FAULTS.retry_after = "0"
    async with running(p, tmp_path) as run:
        await run.run("http.request", {"method": "GET", "url": f"{url}/a"})
        calls = FAULTS.count()
        task = await run.run("http.request", {"method": "GET", "url": f"{url}/b"})
    assert FAULTS.count() == calls
    assert task.state is TaskState.SUCCEEDED
    assert task.result is not None
    assert (task.result["status"], task.result["body"]) == (202, "queued upstream")


async def test_bad_credentials_are_dead_at_once_with_a_clear_message(
    url: str, tmp_path: Path
) -> None:
    FAULTS.always = 401
    async with running(policies_for("hooks"), tmp_path) as run:
        task = await run.run("http.request", post(url))
    assert task.state is TaskState.DEAD
    assert task.attempt == 1
    assert FAULTS.count() == 1
    assert task.errors[0].message == (
        "http: service hooks answered 401 webhook receiver failed with 401: "
        "check the credentials in the task's headers"
    )


async def test_unbound_hosts_and_bad_payloads_are_refused(url: str, tmp_path: Path) -> None:
    async with running(policies_for("hooks"), tmp_path) as run:
        # The rule is known at enqueue: nothing is stored only to die on its first attempt.
        unbound = (
            "http.request task refused: http: no service claims host localhost: add it to "
            'the hosts of a [services.NAME] in policies.toml, name one with "service" in the '
            "payload, or set [plugins.http] default_service"
        )
        with pytest.raises(TaskRejected) as refused:
            await run.enqueue("http.request", post("http://localhost:9"))
        assert str(refused.value) == unbound
        with pytest.raises(TaskRejected) as refused:
            await run.enqueue("http.request", post(url, service="billing"))
        assert str(refused.value) == (
            "http.request task refused: http: no [services.billing] in policies.toml "
            "(services: hooks)"
        )
        assert await run.store.list() == []
        with pytest.raises(TaskRejected, match=r"url: Value error, must be an absolute"):
            await run.enqueue("http.request", {"url": "ftp://x"})
        with pytest.raises(TaskRejected, match='give "json" or "body"'):
            await run.enqueue("http.request", post(url, body="x"))
    assert FAULTS.count() == 0


async def test_a_task_stored_without_the_enqueue_check_still_dies_with_the_message(
    tmp_path: Path,
) -> None:
    # E.g. written by an older gladd, or bound by hosts a reload has since taken away.
    async with running(policies_for("hooks"), tmp_path) as run:
        new = NewTask(kind="http.request", payload=post("http://localhost:9"))
        stored = await run.store.enqueue(new, now=datetime.now(UTC))
        task = await run.wait(stored.id)
    # The executor runs the kind's enqueue check again before the handler: dead at once.
    assert (task.state, task.attempt) == (TaskState.DEAD, 1)
    assert task.errors[0].message.startswith(
        "http.request task refused: http: no service claims host localhost: "
    )


async def test_default_service_takes_hosts_no_service_claims(url: str, tmp_path: Path) -> None:
    extra = '[plugins.http]\ndefault_service = "hooks"\n'
    async with running(policies_for("hooks", extra=extra), tmp_path) as run:
        task_id = await run.enqueue("http.request", post("http://localhost:9"))
    assert task_id > 0


async def _sleep(seconds: float) -> None:
    await anyio.sleep(seconds)


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
