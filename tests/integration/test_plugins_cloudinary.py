"""The ``cloudinary`` plugin against a local Upload API: signed, streamed, handles closed."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from gladd.policies import Policies
from gladd.resilience import BreakerState
from gladd.store import TaskState
from tests.integration.fakes import cloudinary
from tests.integration.fakes.harness import policies_for, running
from tests.integration.fakes.server import Faults, serve

pytestmark = pytest.mark.anyio

FAULTS = Faults()
STATE = cloudinary.CloudinaryState()
IMAGE = os.urandom(300_000)  # several chunks


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(cloudinary.app(FAULTS, STATE)) as url:
        yield url


@pytest.fixture
def url(server: str) -> str:
    FAULTS.reset()
    STATE.assets.clear()
    return server


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "cat.png"
    path.write_bytes(IMAGE)
    return str(path)


def policies(url: str, key: str = cloudinary.API_KEY) -> Policies:
    extra = (
        f'\n[plugins.cloudinary]\nbase_url = "{url}"\ncloud_name = "{cloudinary.CLOUD}"\n'
        f'api_key = "{key}"\napi_secret_env = "CLOUDINARY_SECRET"\n'
    )
    return policies_for("cloudinary", extra=extra)


ENV = {"CLOUDINARY_SECRET": cloudinary.API_SECRET}


def open_files(path: str) -> int:
    """How many descriptors of this process point at ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == path
    return count


async def test_upload_and_destroy(url: str, image: str, tmp_path: Path) -> None:
    async with running(policies(url), tmp_path, ENV) as run:
        up = await run.run("cloudinary.upload", {"file": image, "public_id": "cat", "folder": "s"})
        gone = await run.run("cloudinary.destroy", {"public_id": "s/cat"})
        again = await run.run("cloudinary.destroy", {"public_id": "s/cat"})
    assert up.state is TaskState.SUCCEEDED, up.errors
    assert up.result is not None
    assert (up.result["public_id"], up.result["bytes"]) == ("s/cat", len(IMAGE))
    assert (gone.result, again.result) == ({"result": "ok"}, {"result": "not found"})
    assert open_files(image) == 0


async def test_5xx_then_success_resends_the_whole_file(
    url: str, image: str, tmp_path: Path
) -> None:
    FAULTS.script = [500]
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("cloudinary.upload", {"file": image, "public_id": "cat"})
    assert (task.state, task.attempt, FAULTS.count()) == (TaskState.SUCCEEDED, 1, 2)
    assert STATE.assets["cat"] == IMAGE
    assert open_files(image) == 0


async def test_429_with_retry_after_is_honoured(url: str, image: str, tmp_path: Path) -> None:
    FAULTS.script = [429]
    started = time.monotonic()
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("cloudinary.upload", {"file": image})
    assert (task.state, FAULTS.count()) == (TaskState.SUCCEEDED, 2)
    assert time.monotonic() - started >= 0.95


async def test_hang_times_out_and_the_handle_is_closed(
    url: str, image: str, tmp_path: Path
) -> None:
    FAULTS.script = ["hang", "hang"]
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("cloudinary.upload", {"file": image})
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 2)
    assert task.errors[0].message.startswith("cloudinary: service cloudinary did not answer")
    assert open_files(image) == 0


async def test_breaker_opens_fails_fast_then_recovers(url: str, image: str, tmp_path: Path) -> None:
    FAULTS.always = 500
    async with running(policies(url), tmp_path, ENV) as run:
        await run.enqueue("cloudinary.destroy", {"public_id": "x"})
        # The server counts a request before it answers: wait for the breaker itself.
        await _until(lambda: run.breaker_state("cloudinary") is BreakerState.OPEN)
        assert FAULTS.count() == 2  # opened by the threshold's two failures, no more
        second = await run.enqueue("cloudinary.upload", {"file": image})
        await anyio.sleep(0.1)
        assert FAULTS.count() == 2
        FAULTS.always = None
        assert (await run.wait(second)).state is TaskState.SUCCEEDED
        assert run.breaker_state("cloudinary") is BreakerState.CLOSED
    assert open_files(image) == 0


async def test_bad_credentials_are_dead_at_once(url: str, image: str, tmp_path: Path) -> None:
    async with running(policies(url, key="999"), tmp_path, ENV) as run:
        task = await run.run("cloudinary.upload", {"file": image})
        missing = await run.run("cloudinary.upload", {"file": "/nonexistent/x.png"})
    assert (task.state, task.attempt, FAULTS.count()) == (TaskState.DEAD, 1, 1)
    assert task.errors[0].message == (
        "cloudinary: service cloudinary answered 401 Unknown API key 999: "
        "check [plugins.cloudinary] api_key and api_secret"
    )
    assert missing.state is TaskState.DEAD
    assert "cannot read /nonexistent/x.png" in missing.errors[0].message
    assert open_files(image) == 0


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
