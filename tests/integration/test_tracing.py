"""Traces, as an operator's tracing backend would show them: spans caught by OpenTelemetry's
in-memory exporter while the daemon's wiring (:class:`Runtime`, the shipped ``http``
plugin, the executor) runs tasks that call a real local server failing on purpose.

The structure checked: the application's span → ``send KIND`` (PRODUCER) → ``process KIND``
(CONSUMER, per attempt, a child of the stored traceparent and linked to it) → ``GET``
(CLIENT, per outbound call) carrying the resilience engine's decisions as events, and the
context the server received.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from gladd import tracing
from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.executor.service import TaskService
from gladd.policies import Policies, parse_policies
from gladd.store import TaskState
from gladd.store.configure import configured_store
from gladd.store.memory import MemoryStore
from tests.integration.fakes import webhook
from tests.integration.fakes.harness import BASE, admin_client, running
from tests.integration.fakes.server import Faults, serve

pytestmark = pytest.mark.anyio

FAULTS = Faults()
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def policies(
    *, attempts: int = 3, breaker_failures: int = 5, fallback: bool = False, budget: str = ""
) -> Policies:
    """The harness's policies, with the service retrying ``attempts`` times in all."""
    text = BASE.format(service="hooks", retry_post="false")
    text = text.replace(
        'attempts = 2\nbackoff = "constant"\nbase_delay = "10ms"',
        (f'attempts = {attempts}\nbackoff = "constant"\nbase_delay = "10ms"'),
    )
    text = text.replace("failures = 2", f"failures = {breaker_failures}")
    # An open breaker stays open for the rest of the test.
    text = text.replace(
        'open_for = "300ms"\nmax_open_for = "300ms"', 'open_for = "1h"\nmax_open_for = "1h"'
    )
    if budget:
        old = 'budget = { ratio = 1.0, window = "10s", min_per_second = 100.0 }'
        text = text.replace(old, f"budget = {budget}")
    if fallback:
        text = text.replace(
            "open_backoff = 1.0",
            'open_backoff = 1.0\nfallback = "static"\n'
            'fallback_value = { status = 203, body = "later" }',
        )
    return parse_policies(text.encode(), source="test").policies


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(webhook.app(FAULTS)) as url:
        yield url


@pytest.fixture
def url(server: str) -> Iterator[str]:
    FAULTS.reset()
    yield server
    FAULTS.reset()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def ids(traceparent: str | None) -> tuple[int, int]:
    """The trace id and span id a ``traceparent`` names."""
    assert traceparent is not None
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


def context_of(span: ReadableSpan) -> SpanContext:
    assert span.context is not None
    return span.context


async def test_a_task_retried_twice_against_a_failing_server_is_one_trace(
    url: str, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    FAULTS.script = [502, 502]
    app = tracing.current()
    assert app is not None
    async with running(policies(), tmp_path) as run:
        with app.tracer.start_as_current_span("checkout") as checkout:
            task_id = await run.enqueue("http.request", {"method": "GET", "url": f"{url}/a"})
        task = await run.wait(task_id)
    assert task.state is TaskState.SUCCEEDED, task.errors
    trace_id = checkout.get_span_context().trace_id

    (send,) = named(spans, "send http.request")
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None
    assert send.parent.span_id == checkout.get_span_context().span_id
    assert send.attributes is not None
    assert send.attributes["messaging.destination.name"] == "http.request"
    assert send.attributes["messaging.message.id"] == str(task_id)
    assert ids(task.traceparent) == (trace_id, context_of(send).span_id)

    (process,) = named(spans, "process http.request")
    assert process.kind is SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == context_of(send).span_id
    assert [link.context.span_id for link in process.links] == [context_of(send).span_id]
    attributes = dict(process.attributes or {})
    assert attributes["gladd.task.attempt"] == 1
    assert attributes["gladd.node"] == "w1"
    assert attributes["gladd.task.outcome"] == "succeeded"
    assert attributes["messaging.operation.type"] == "process"

    (call,) = named(spans, "GET")
    assert call.kind is SpanKind.CLIENT
    assert call.parent is not None
    assert call.parent.span_id == context_of(process).span_id
    call_attributes = dict(call.attributes or {})
    assert call_attributes["http.response.status_code"] == 200
    assert call_attributes["gladd.service"] == "hooks"
    assert call_attributes["url.full"] == f"{url}/a"
    retries = [e for e in call.events if e.name == "gladd.retry"]
    assert [dict(e.attributes or {}) for e in retries] == [
        {
            "gladd.policy": "api",
            "gladd.target": "hooks",
            "gladd.attempt": attempt,
            "gladd.delay": 0.01,
            "gladd.cause": "5xx",
            "gladd.error": "RetryableStatus: HTTP 502",
        }
        for attempt in (1, 2)
    ]
    assert {s.context.trace_id for s in spans.get_finished_spans() if s.context} == {trace_id}

    # The server saw the call's context on each of the three requests.
    assert FAULTS.count() == 3
    sent = (trace_id, context_of(call).span_id)
    assert [ids(seen.headers.get("traceparent")) for seen in FAULTS.seen] == [sent] * 3


async def test_each_attempt_is_its_own_span_and_a_failed_one_says_why(
    url: str, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    # POST is not repeated by the transport: the first attempt fails, the executor retries.
    FAULTS.script = [500]
    async with running(policies(), tmp_path) as run:
        task = await run.run("http.request", {"method": "POST", "url": f"{url}/o", "json": {}})
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 2)
    (send,) = named(spans, "send http.request")
    first, second = sorted(named(spans, "process http.request"), key=lambda s: s.start_time or 0)
    for attempt, span in ((1, first), (2, second)):
        assert span.parent is not None
        assert span.parent.span_id == context_of(send).span_id
        assert dict(span.attributes or {})["gladd.task.attempt"] == attempt
    assert dict(first.attributes or {})["gladd.task.outcome"] == "failed"
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description is not None
    assert "service hooks answered 500" in first.status.description
    assert [e.name for e in first.events] == ["exception"]
    assert dict(second.attributes or {})["gladd.task.outcome"] == "succeeded"
    assert second.status.status_code is StatusCode.UNSET
    calls = named(spans, "POST")
    assert [dict(c.attributes or {})["http.response.status_code"] for c in calls] == [500, 201]
    assert calls[0].status.status_code is StatusCode.ERROR


async def test_an_http_enqueue_continues_the_callers_traceparent(
    url: str, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    async with running(policies(), tmp_path) as run:
        rt = run.runtime
        async with admin_client(rt) as client:
            body = {"kind": "http.request", "payload": {"method": "GET", "url": f"{url}/h"}}
            traced = await client.post("/tasks", json=body, headers={"traceparent": CALLER})
            garbled = await client.post("/tasks", json=body, headers={"traceparent": "00-zz"})
        assert (traced.status_code, garbled.status_code) == (201, 201)
        continued = await run.wait(traced.json()["id"])
        fresh = await run.wait(garbled.json()["id"])
    send = {
        dict(s.attributes or {})["messaging.message.id"]: s
        for s in named(spans, "send http.request")
    }
    caller = send[str(continued.id)]
    assert caller.parent is not None
    assert (caller.parent.trace_id, caller.parent.span_id) == (TRACE_ID, 0xB7AD6B7169203331)
    assert caller.parent.is_remote
    assert ids(continued.traceparent) == (TRACE_ID, context_of(caller).span_id)
    # A header that is not a trace context is ignored (W3C Trace Context §3.2.2.2): a new trace.
    assert send[str(fresh.id)].parent is None
    assert ids(fresh.traceparent)[0] != TRACE_ID
    processes = {
        dict(s.attributes or {})["messaging.message.id"]: s
        for s in named(spans, "process http.request")
    }
    assert context_of(processes[str(continued.id)]).trace_id == TRACE_ID


async def test_breaker_rejections_fallbacks_timeouts_and_retry_after_are_span_events(
    url: str, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    # A hang (attempt timeout), then a 429 with Retry-After: 0, which opens the breaker:
    # the third attempt is refused by it and the static fallback answers.
    FAULTS.script = ["hang", 429]
    FAULTS.hang_for = 1.0
    FAULTS.retry_after = "0"
    rules = policies(attempts=3, breaker_failures=2, fallback=True)
    async with running(rules, tmp_path) as run:
        task = await run.run("http.request", {"method": "GET", "url": f"{url}/slow"})
    assert (task.state, task.attempt, task.result["status"]) == (TaskState.SUCCEEDED, 1, 203)
    (call,) = named(spans, "GET")
    events = [(e.name, dict(e.attributes or {})) for e in call.events]
    assert [name for name, _ in events] == [
        "gladd.timeout",
        "gladd.retry",
        "gladd.breaker_state_changed",
        "gladd.retry",
        "gladd.breaker_rejected",
        "gladd.fallback_served",
    ]
    assert all(a["gladd.policy"] == "api" and a["gladd.target"] == "hooks" for _, a in events)
    timeout, _, opened, waited, rejected, served = (a for _, a in events)
    assert (timeout["gladd.scope"], timeout["gladd.after"]) == ("attempt", 0.3)
    assert (opened["gladd.old"], opened["gladd.new"]) == ("closed", "open")
    assert (waited["gladd.cause"], waited["gladd.retry_after"]) == ("429", 0.0)
    assert (rejected["gladd.breaker"], rejected["gladd.state"]) == ("api", "open")
    assert served["gladd.kind"] == "static"
    assert dict(call.attributes or {})["http.response.status_code"] == 203


async def test_a_retry_the_budget_refuses_is_a_span_event(
    url: str, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    FAULTS.script = [502]
    rules = policies(budget='{ ratio = 0.01, window = "10s", min_per_second = 0.0 }')
    async with running(rules, tmp_path) as run:
        await run.run("http.request", {"method": "GET", "url": f"{url}/b"})
    first = min(named(spans, "GET"), key=lambda s: s.start_time or 0)
    events = {e.name: dict(e.attributes or {}) for e in first.events}
    assert events["gladd.budget_exhausted"]["gladd.policy"] == "api"
    assert events["gladd.gave_up"]["gladd.reason"] == "budget"
    assert FAULTS.count("/b") >= 1


async def test_with_store_spans_each_store_operation_is_a_span_under_its_caller(
    tmp_path: Path,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traces = tracing.enable(provider, store_spans=True)
    rules = policies()
    try:
        store = configured_store(f"sqlite:///{tmp_path / 'gladd.db'}", rules)
        service = TaskService(store, KindRegistry(builtin_kinds()), lambda: rules)
        await store.open()
        try:
            enqueued = await service.enqueue("gladd.noop")
            assert await store.get(enqueued.id) is not None
        finally:
            await store.close()
    finally:
        tracing.disable()
        provider.shutdown()
    assert traces.store_spans
    (send,) = named(exporter, "send gladd.noop")
    (insert,) = named(exporter, "gladd.store enqueue")
    assert insert.kind is SpanKind.CLIENT
    assert insert.parent is not None
    assert insert.parent.span_id == context_of(send).span_id
    assert dict(insert.attributes or {}) == {
        "db.system.name": "sqlite",
        "db.operation.name": "enqueue",
        "gladd.store": store.url,
    }
    assert [s.name for s in exporter.get_finished_spans()] == [
        "gladd.store open",
        "gladd.store enqueue",
        "send gladd.noop",
        "gladd.store get",
    ]


async def test_a_batch_enqueue_is_one_send_span_every_task_of_it_continues(
    spans: InMemorySpanExporter,
) -> None:
    store = MemoryStore()
    await store.open()
    service = TaskService(store, KindRegistry(builtin_kinds()), policies)
    items = [{"kind": "gladd.noop"}, {"kind": "gladd.sleep", "payload": {"seconds": 0}}]
    enqueued = await service.enqueue_many([*items, items[0]], trace={"traceparent": CALLER})
    same_kind = await service.enqueue_many([items[0], items[0]])
    (batch,) = named(spans, "send gladd.batch")
    (noops,) = named(spans, "send gladd.noop")
    assert batch.kind is SpanKind.PRODUCER
    assert batch.parent is not None
    assert (batch.parent.trace_id, batch.parent.span_id) == (TRACE_ID, 0xB7AD6B7169203331)
    assert dict(batch.attributes or {})["messaging.batch.message_count"] == 3
    assert dict(noops.attributes or {})["gladd.tasks.created"] == 2
    for done in enqueued:
        assert ids((await service.get(done.id)).traceparent) == (
            TRACE_ID,
            context_of(batch).span_id,
        )
    for done in same_kind:
        assert ids((await service.get(done.id)).traceparent)[1] == context_of(noops).span_id
    await store.close()
