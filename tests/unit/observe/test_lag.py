"""Loop-lag attribution: the activity registry, the culprit's line, the warning's words."""

from __future__ import annotations

import asyncio
import json.decoder
import sys
import threading

import pytest

from gladd.instruments.activity import Activities, Activity
from gladd.observe.lag import Blocked, Histogram, where


def test_the_registry_maps_the_current_asyncio_task_and_restores_the_outer() -> None:
    registry = Activities()

    async def main() -> None:
        me = asyncio.current_task()
        assert registry.of(me) is None
        with registry.running("plugin", "github"):
            assert registry.of(me) == Activity(what="plugin", name="github")
            await registry.track("task", "github.sync", asyncio.sleep(0), detail="task 7")
            inner = asyncio.create_task(
                registry.track("task", "other", asyncio.sleep(0.01), detail="task 8")
            )
            await asyncio.sleep(0)
            assert registry.of(inner) == Activity(what="task", name="other", detail="task 8")
            assert registry.of(me) == Activity(what="plugin", name="github")
            await inner
        assert registry.of(me) is None
        assert registry.now() == []

    asyncio.run(main())


def test_outside_an_asyncio_task_the_registry_does_nothing() -> None:
    registry = Activities()
    with registry.running("task", "x"):
        assert registry.now() == []


def test_the_registry_is_readable_from_another_thread() -> None:
    registry = Activities()
    seen: list[Activity | None] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with registry.running("task", "demo.block", "task 1"):
            watcher = threading.Thread(
                target=lambda: seen.append(registry.of(asyncio.current_task(loop)))
            )
            watcher.start()
            watcher.join()  # blocks the loop on purpose: the watcher reads meanwhile

    asyncio.run(main())
    assert seen == [Activity(what="task", name="demo.block", detail="task 1")]


def test_where_names_the_line_and_its_caller_outside_the_standard_library() -> None:
    frame = sys._getframe()
    assert where(frame) == f"{__file__}:{frame.f_lineno} in {frame.f_code.co_name}"
    decoder_frame = None

    def trace(f, event, arg):  # type: ignore[no-untyped-def]
        nonlocal decoder_frame
        if decoder_frame is None and f.f_code.co_filename == json.decoder.__file__:
            decoder_frame = f
        return None

    sys.setprofile(trace)
    try:
        json.loads("[1]")
    finally:
        sys.setprofile(None)
    assert decoder_frame is not None
    text = where(decoder_frame)
    assert text is not None
    assert text.startswith(f"{json.decoder.__file__}:")
    assert f", called from {__file__}:" in text
    assert where(None) is None


@pytest.mark.parametrize(
    ("blocked", "expected"),
    [
        (
            Blocked(
                lag=0.8,
                culprit=Activity(what="task", name="crm.sync", detail="task 17, plugin crm"),
                where="/srv/plugins/crm.py:42 in sync",
            ),
            "event loop blocked for 800ms (lag threshold 100ms) by task crm.sync "
            "(task 17, plugin crm), at /srv/plugins/crm.py:42 in sync",
        ),
        (
            Blocked(lag=1.5, where="/x.py:1 in f"),
            "event loop blocked for 1.5s (lag threshold 100ms) by code outside any task "
            "or plugin, at /x.py:1 in f",
        ),
        (
            Blocked(lag=0.2, in_flight=(Activity(what="task", name="a"),)),
            "event loop blocked for 200ms (lag threshold 100ms); in progress: task a",
        ),
        (Blocked(lag=0.2), "event loop blocked for 200ms (lag threshold 100ms); no task or "),
    ],
)
def test_the_warning_names_the_culprit(blocked: Blocked, expected: str) -> None:
    message = blocked.message(0.1)
    assert message.startswith(expected)
    assert message.endswith("synchronous work in async code stalls everything; use a thread")


def test_blocked_kind_label() -> None:
    assert Blocked(lag=1, culprit=Activity(what="task", name="k")).kind == "k"
    assert Blocked(lag=1).kind == "unknown"


def test_histogram_buckets_are_cumulative_with_inf() -> None:
    h = Histogram(bounds=(0.01, 0.1, 1.0))
    for value in (0.005, 0.05, 0.05, 3.0):
        h.observe(value)
    assert h.buckets() == [("0.01", 1.0), ("0.1", 3.0), ("1", 3.0), ("+Inf", 4.0)]
    assert h.count == 4
    assert h.total == pytest.approx(3.105)
