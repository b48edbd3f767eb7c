"""The daemon's own stops and retries: the loop that opens its store (a jittered backoff
while the database is away, no loop at all for a file that can never be a database), and
what a stop signal before READY means."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import anyio
import pytest
from loguru import logger

from gladd.daemon import Daemon
from gladd.notify import Notifier
from gladd.policies import parse_policies
from gladd.settings import Settings

pytestmark = pytest.mark.anyio

FAST_RECONNECT = b"""
[database]
retry = "reconnect"

[retry.reconnect]
backoff = "exponential"
base_delay = "10ms"
max_delay = "80ms"
jitter = "full"
"""


def daemon(tmp_path: Path, url: str) -> Daemon:
    settings = Settings(database_url=url, state_dir=tmp_path / "state", plugin_paths=())
    loaded = parse_policies(FAST_RECONNECT, source="policies.toml")
    return Daemon(settings, loaded, Notifier(None))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connections are refused


async def test_the_store_is_retried_after_jittered_bounded_delays(tmp_path: Path) -> None:
    node = daemon(tmp_path, f"postgresql://postgres@127.0.0.1:{closed_port()}/none")
    node._store_pacer.rng = random.Random(8)
    waits: list[float] = []

    def heard(message: object) -> None:
        text = str(message)
        if "retrying to open the task store in " in text:
            waits.append(float(text.rsplit(" in ", 1)[1].split("s", maxsplit=1)[0]))

    sink = logger.add(heard, level="INFO", format="{message}")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(node._open_store)
            with anyio.fail_after(20):
                while len(waits) < 8:
                    await anyio.sleep(0.01)
            node._stop.set()
    finally:
        logger.remove(sink)
    ceilings = [min(0.01 * 2 ** (n - 1), 0.08) for n in range(1, 9)]
    assert all(0 <= w <= c * 1.001 for w, c in zip(waits[:8], ceilings, strict=True)), waits
    assert waits[:8] != ceilings  # jittered: a fleet does not come back in lockstep
    assert len(set(waits[:8])) > 4


async def test_a_corrupt_sqlite_file_is_not_retried(tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(random.Random(3).randbytes(8192))
    node = daemon(tmp_path, f"sqlite:///{broken}")
    with anyio.fail_after(10):
        opened = await node._open_store()
    assert opened is False
    assert node._fatal is not None
    assert f"the task store cannot be used: {broken} is not a SQLite database" in str(node._fatal)
    assert node._stop.is_set()


@pytest.mark.parametrize(
    ("signal_name", "ready", "interrupted"),
    [("SIGINT", False, True), ("SIGINT", True, False), ("SIGTERM", False, False)],
)
async def test_only_a_sigint_before_ready_counts_as_interrupting_the_start(
    tmp_path: Path, signal_name: str, ready: bool, interrupted: bool
) -> None:
    node = daemon(tmp_path, f"sqlite:///{tmp_path / 'gladd.db'}")
    node.runtime.board.started = ready
    node._stop_signals = 1
    node._stopping(signal_name)
    assert node._stop.is_set()
    assert node.interrupted_at_start is interrupted
