import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from gladd.notify import Notifier, run_watchdog, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    with sock:
        yield sock, str(path)


def receive_all(sock: socket.socket) -> list[str]:
    datagrams = []
    sock.setblocking(False)
    try:
        while True:
            datagrams.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return datagrams


def test_convenience_methods_send_one_datagram_each(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    with Notifier.from_environ({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
        assert notifier.ready("serving 3 policies")
        assert notifier.status("draining\n2 tasks left")
        assert notifier.watchdog()
        assert notifier.mainpid(4242)
        assert notifier.stopping()
        assert notifier.send("EXTEND_TIMEOUT_USEC=5000000", "STATUS=slow")

    assert receive_all(sock) == [
        "READY=1\nSTATUS=serving 3 policies",
        "STATUS=draining 2 tasks left",
        "WATCHDOG=1",
        "MAINPID=4242",
        "STOPPING=1",
        "EXTEND_TIMEOUT_USEC=5000000\nSTATUS=slow",
    ]


def test_reloading_carries_monotonic_timestamp(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    with Notifier.from_environ({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    reloading, monotonic = sock.recv(4096).decode().split("\n")
    key, _, value = monotonic.partition("=")
    assert reloading == "RELOADING=1"
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_namespace_socket() -> None:
    name = f"gladd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        with Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"NOTIFY_SOCKET": ""},
        {"NOTIFY_SOCKET": "relative.sock"},
        {"NOTIFY_SOCKET": "@"},
        {"NOTIFY_SOCKET": "vsock:2:1234"},
    ],
)
def test_disabled_notifier_is_a_no_op(environ: dict[str, str]) -> None:
    with Notifier.from_environ(environ) as notifier:
        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.reloading()
        assert not notifier.watchdog()


def test_default_environ_is_os_environ(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with Notifier.from_environ() as notifier:
        assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_send_to_removed_socket_returns_false(tmp_path: Path) -> None:
    path = tmp_path / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    with Notifier.from_environ({"NOTIFY_SOCKET": str(path)}) as notifier:
        assert notifier.ready()
        sock.close()
        path.unlink()
        assert not notifier.watchdog()
        assert not notifier.status("still alive")


def test_send_after_close_reopens(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.watchdog()
    notifier.close()
    assert notifier.watchdog()
    notifier.close()
    assert receive_all(sock) == ["WATCHDOG=1", "WATCHDOG=1"]


@pytest.mark.parametrize("field", ["READY", "=1", "STATUS=a\nREADY=1"])
def test_malformed_fields_are_rejected_even_when_disabled(field: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        Notifier(None).send(field)


def test_send_needs_a_field() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Notifier(None).send()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "1000"}, 0.0005),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ) == expected


def test_watchdog_interval_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0


@pytest.mark.anyio
async def test_run_watchdog_pings_from_the_event_loop(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    sock.setblocking(False)
    pings: list[bytes] = []
    with Notifier.from_environ({"NOTIFY_SOCKET": path}) as notifier:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await tg.start(run_watchdog, notifier, 0.01)
                while len(pings) < 3:
                    await anyio.wait_readable(sock)
                    pings.append(sock.recv(4096))
                tg.cancel_scope.cancel()
    assert pings == [b"WATCHDOG=1"] * 3


@pytest.mark.anyio
async def test_run_watchdog_rejects_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await run_watchdog(Notifier(None), 0)


def test_full_receive_queue_does_not_block(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    with Notifier.from_environ({"NOTIFY_SOCKET": path}) as notifier:
        results = [notifier.watchdog() for _ in range(10_000)]
    assert results[0]
    assert not results[-1]
