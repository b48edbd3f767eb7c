"""The Python API an application uses to hand over tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import gladd
from gladd.errors import BatchRejected
from gladd.store.factory import store_from_url

pytestmark = pytest.mark.anyio


async def made(url: str) -> str:
    """The store at ``url``, created as ``gladd db migrate`` (or the daemon) does."""
    store = store_from_url(url)
    await store.open()
    await store.close()
    return url


async def test_enqueue_into_a_sqlite_store_and_read_back(tmp_path: Path) -> None:
    url = await made(f"sqlite:///{tmp_path / 'gladd.db'}")
    task_id = await gladd.enqueue("gladd.sleep", {"seconds": 0.5}, database_url=url)
    async with gladd.Client(url) as client:
        task = await client.get(task_id)
        again = await client.enqueue("gladd.noop", unique_key="k")
        same = await client.enqueue("gladd.noop", unique_key="k")
    assert task.kind == "gladd.sleep"
    assert task.state is gladd.TaskState.PENDING
    assert task.payload == {"seconds": 0.5}
    assert again == same


async def test_bad_input_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    url = await made(f"sqlite:///{tmp_path / 'gladd.db'}")
    async with gladd.Client(url) as client:
        with pytest.raises(gladd.TaskRejected, match="unknown task kind 'nope'"):
            await client.enqueue("nope")
        with pytest.raises(gladd.TaskRejected, match="seconds"):
            await client.enqueue("gladd.sleep", {"seconds": "long"})
        with pytest.raises(gladd.UnknownTask, match="no task with id 1"):
            await client.get(1)


async def test_postgres_store_by_url(postgres_url: str) -> None:
    async with gladd.Client(await made(postgres_url)) as client:
        task_id = await client.enqueue("gladd.noop", {"x": 1}, priority=5)
        task = await client.get(task_id)
    assert task.priority == 5
    assert task.payload == {"x": 1}


async def test_a_clients_postgres_store_does_not_listen_for_new_tasks(postgres_url: str) -> None:
    """A client only enqueues and reads: its store does not LISTEN for new tasks, so the
    server does not send it a notification for each task it stores (the daemon's does)."""
    async with gladd.Client(await made(postgres_url)) as client:
        await client.enqueue("gladd.noop")
        listener = client._store._listener  # type: ignore[attr-defined]
        assert listener is not None
        assert listener.work_wanted is False


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(gladd.ConfigError, match="unsupported scheme 'mysql'"):
        gladd.Client("mysql://localhost/x")


async def test_a_store_that_is_not_there_is_refused_and_not_created(tmp_path: Path) -> None:
    db = tmp_path / "state" / "gladd.db"
    with pytest.raises(gladd.StoreNotFound, match=f"no SQLite database at {db}"):
        async with gladd.Client(f"sqlite:///{db}"):
            pass
    with pytest.raises(gladd.StoreNotFound, match=f"no SQLite database at {db}"):
        await gladd.enqueue("gladd.noop", database_url=f"sqlite:///{db}")
    assert not (tmp_path / "state").exists()


async def test_without_a_url_the_client_reads_the_env_file_like_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon_state = tmp_path / "daemon-state"
    daemon_state.mkdir()
    url = await made(f"sqlite:///{daemon_state / 'gladd.db'}")
    env_file = tmp_path / "gladd.env"
    env_file.write_text(f"GLADD_STATE_DIR={daemon_state}\n")
    monkeypatch.setenv("GLADD_ENV_FILE", str(env_file))
    task_id = await gladd.enqueue("gladd.noop")
    async with gladd.Client(url) as client:
        assert (await client.get(task_id)).kind == "gladd.noop"


async def test_what_no_store_can_keep_is_refused_from_python_too(tmp_path: Path) -> None:
    url = await made(f"sqlite:///{tmp_path / 'gladd.db'}")
    async with gladd.Client(url) as client:
        refusals: list[tuple[Any, str]] = [
            ({"kind": "gladd.noop", "payload": {"x": "\udfff"}}, "payload.x: contains a lone"),
            ({"kind": "gladd.noop", "payload": {"x": "a\x00"}}, "payload.x: contains a NUL"),
            ({"kind": "gladd.noop", "payload": _nested(150)}, "nested more than 100 levels"),
            ({"kind": "gladd.noop", "payload": _nested(5000)}, "nested more than 100 levels"),
            ({"kind": "gladd.noop", "priority": True}, "priority must be a whole number"),
            ({"kind": "gladd.noop", "priority": 1.5}, "priority must be a whole number"),
            ({"kind": "gladd.noop", "delay": float("nan")}, "delay must be at least 0s"),
            ({"kind": "gladd.noop", "delay": float("inf")}, "delay must be at least 0s"),
            ({"kind": "gladd.noop", "delay": 3651 * 86400}, "at most 3650d"),
            ({"kind": "gladd.noop", "timeout": 1e300}, "timeout must be more than 0s"),
            ({"kind": "gladd.noop", "unique_key": "k\x00"}, "unique_key contains a NUL"),
            ({"kind": "gladd.noop", "unique_key": "\ud800"}, "unique_key contains a lone"),
            ({"kind": 17}, "kind must be a string"),
            ({"kind": "gladd.noop", "delay": 10**400}, r"at most 3650d, ten years \(got infs\)"),
            ({"kind": "gladd.noop", "priority": 10**5000}, "an integer of 16610 bits"),
        ]
        for call, message in refusals:
            with pytest.raises(gladd.TaskRejected, match=message):
                await client.enqueue(**call)
        for task_id in (2**63, -(2**63) - 1, 10**30):
            with pytest.raises(gladd.UnknownTask, match="fit a signed 64-bit integer"):
                await client.get(task_id)
        task_id = await client.enqueue("gladd.noop", delay=3650 * 86400)  # the limit itself
        assert (await client.get(task_id)).state is gladd.TaskState.PENDING


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


async def test_with_traces_on_an_enqueue_joins_the_applications_current_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SDK set up by the application (OpenTelemetry's no-op provider): the task still
    records the trace the application's code runs in, for the daemon's attempts to join."""
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags  # noqa: PLC0415

    from gladd import tracing  # noqa: PLC0415

    url = await made(f"sqlite:///{tmp_path / 'gladd.db'}")
    monkeypatch.setenv("GLADD_OTEL", "true")
    caller = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    try:
        async with gladd.Client(url) as client:
            assert tracing.current() is not None
            with trace.use_span(NonRecordingSpan(caller)):
                traced = await client.get(await client.enqueue("gladd.noop"))
            untraced = await client.get(await client.enqueue("gladd.noop"))
    finally:
        tracing.disable()
    assert traced.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert untraced.traceparent is None  # no trace to join, none made up


async def test_with_traces_off_an_enqueue_records_no_trace(tmp_path: Path) -> None:
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags  # noqa: PLC0415

    url = await made(f"sqlite:///{tmp_path / 'gladd.db'}")
    caller = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(1))
    async with gladd.Client(url) as client:
        with trace.use_span(NonRecordingSpan(caller)):
            task = await client.get(await client.enqueue("gladd.noop"))
    assert task.traceparent is None


async def test_durations_are_seconds_or_text_the_same_way_everywhere(tmp_path: Path) -> None:
    url = await made(f"sqlite:///{tmp_path / 'gladd.db'}")
    by_text = await gladd.enqueue("gladd.noop", database_url=url, delay="1m30s", timeout="2s")
    async with gladd.Client(url) as client:
        by_seconds = await client.enqueue("gladd.noop", delay=90, timeout=2.0)
        text, seconds = await client.get(by_text), await client.get(by_seconds)
        with pytest.raises(gladd.TaskRejected) as refused:
            await client.enqueue("gladd.noop", delay="soon")
        with pytest.raises(gladd.TaskRejected, match="timeout must be more than 0s"):
            await client.enqueue("gladd.noop", timeout="0s")
        with pytest.raises(gladd.TaskRejected, match=r"delay must be a number of seconds or"):
            await client.enqueue("gladd.noop", delay=[30])
    assert text.timeout == seconds.timeout == 2.0
    assert (text.run_at - text.created_at).total_seconds() == 90.0
    assert (seconds.run_at - seconds.created_at).total_seconds() == 90.0
    assert str(refused.value) == (
        "delay: 'soon' is not a duration: use a number and a unit (ms, s, m, h, d), "
        'like "500ms", "5s", "15m", "1h30m" or "7d"'
    )


async def test_enqueue_many_stores_a_batch_or_nothing(tmp_path: Path) -> None:
    url = await made(f"sqlite:///{tmp_path / 'gladd.db'}")
    async with gladd.Client(url) as client:
        held = await client.enqueue("gladd.noop", unique_key="held")
        ids = await client.enqueue_many(
            iter(
                [
                    {"kind": "gladd.sleep", "payload": {"seconds": 0.5}, "delay": 30},
                    {"kind": "gladd.noop", "unique_key": "held"},
                    {"kind": "gladd.noop", "priority": 4, "timeout": 2.0},
                ]
            )
        )
        assert ids[1] == held
        assert ids[0] < ids[2]
        sleep, noop = await client.get(ids[0]), await client.get(ids[2])
        assert (sleep.kind, sleep.payload) == ("gladd.sleep", {"seconds": 0.5})
        assert (noop.priority, noop.timeout) == (4, 2.0)

        with pytest.raises(BatchRejected) as caught:
            await client.enqueue_many(
                [{"kind": "gladd.noop", "unique_key": "fresh"}, {"kind": "nope"}, {"kind": 1}]
            )
        assert isinstance(caught.value, gladd.TaskRejected)
        rendered = [p.render() for p in caught.value.problems]
        assert rendered[0].startswith("item 1: kind: unknown task kind 'nope'")
        assert rendered[1] == "item 2: kind: kind must be a string (got 1)"
        # "fresh" was never stored: a new task takes it.
        assert await client.enqueue("gladd.noop", unique_key="fresh") > ids[2]
        assert await client.enqueue_many([]) == []
