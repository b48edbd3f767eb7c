"""The ``huggingface`` plugin against a local Inference API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from gladd.policies import Policies
from gladd.resilience import BreakerState
from gladd.store import TaskState
from tests.integration.fakes import huggingface
from tests.integration.fakes.harness import policies_for, running
from tests.integration.fakes.server import Faults, serve

pytestmark = pytest.mark.anyio

FAULTS = Faults()
STATE = huggingface.HubState()
ASK = {"model": "distilbert/sst2", "inputs": "I like it"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(huggingface.app(FAULTS, STATE)) as url:
        yield url


@pytest.fixture
def url(server: str) -> str:
    FAULTS.reset()
    STATE.loading = 0
    return server


def policies(url: str) -> Policies:
    extra = f'\n[plugins.huggingface]\nbase_url = "{url}"\ntoken_env = "HF_TOKEN"\n'
    return policies_for("huggingface", extra=extra)


ENV = {"HF_TOKEN": huggingface.TOKEN}


async def test_success(url: str, tmp_path: Path) -> None:
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("huggingface.inference", ASK)
    assert task.state is TaskState.SUCCEEDED, task.errors
    assert task.result == [{"label": "POSITIVE", "score": 0.99, "echo": "I like it"}]


async def test_5xx_then_success_and_a_loading_model(url: str, tmp_path: Path) -> None:
    FAULTS.script = [500]
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("huggingface.inference", ASK)
        assert (task.state, task.attempt, FAULTS.count()) == (TaskState.SUCCEEDED, 1, 2)
        STATE.loading = 2  # outlasts the transport's two attempts
        loading = await run.run("huggingface.inference", ASK)
    assert (loading.state, loading.attempt) == (TaskState.SUCCEEDED, 2)
    assert loading.errors[0].message.endswith("(model loading, about 0s)")
    assert "currently loading" in loading.errors[0].message


async def test_429_with_retry_after_is_honoured(url: str, tmp_path: Path) -> None:
    FAULTS.script = [429]
    started = time.monotonic()
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("huggingface.inference", ASK)
    assert (task.state, FAULTS.count()) == (TaskState.SUCCEEDED, 2)
    assert time.monotonic() - started >= 0.95


async def test_hang_times_out_then_the_task_retries(url: str, tmp_path: Path) -> None:
    FAULTS.script = ["hang", "hang"]
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("huggingface.inference", ASK)
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 2)
    assert task.errors[0].type == "gladd.plugins.errors.ServiceTimeout"


async def test_breaker_opens_fails_fast_then_recovers(url: str, tmp_path: Path) -> None:
    FAULTS.always = 500
    async with running(policies(url), tmp_path, ENV) as run:
        await run.enqueue("huggingface.inference", ASK)
        # The server counts a request before it answers: wait for the breaker itself.
        await _until(lambda: run.breaker_state("huggingface") is BreakerState.OPEN)
        assert FAULTS.count() == 2  # opened by the threshold's two failures, no more
        second = await run.enqueue("huggingface.inference", ASK)
        await anyio.sleep(0.1)
        assert FAULTS.count() == 2
        FAULTS.always = None
        assert (await run.wait(second)).state is TaskState.SUCCEEDED
        assert run.breaker_state("huggingface") is BreakerState.CLOSED


async def test_bad_credentials_are_dead_at_once(url: str, tmp_path: Path) -> None:
    async with running(policies(url), tmp_path, {"HF_TOKEN": "hf_wrong"}) as run:
        task = await run.run("huggingface.inference", ASK)
    assert (task.state, task.attempt, FAULTS.count()) == (TaskState.DEAD, 1, 1)
    assert task.errors[0].message == (
        "huggingface: service huggingface answered 401 Invalid credentials in Authorization "
        "header: check [plugins.huggingface] token (token_env / token_file)"
    )


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
