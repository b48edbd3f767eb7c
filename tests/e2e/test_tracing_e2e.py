"""The real daemon (and the CLI) exporting traces over OTLP/HTTP to a local collector that
the test starts: what an operator pointing ``OTEL_EXPORTER_OTLP_ENDPOINT`` at their
collector receives, and what they get with traces off or misconfigured."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.e2e.conftest import LoggedGladd, run_cli, wait_until

pytestmark = pytest.mark.e2e

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

POLICIES = """
[executor]
retry = "once"
poll_interval = "50ms"
[retry.once]
attempts = 1
deadline = "1h"
[retry.quick]
attempts = 3
base_delay = "10ms"
max_delay = "20ms"
deadline = "10s"
on = ["5xx"]
[services.up]
retry = "quick"
timeout = "2s"
hosts = ["127.0.0.1:{port}"]
"""


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]


@dataclass
class Collector:
    """An OTLP/HTTP receiver: ``POST /v1/traces`` with a protobuf body, as the SDK sends."""

    url: str = ""
    spans: list[Span] = field(default_factory=list)
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.posts += 1
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for s in scope_spans.spans:
                        self.spans.append(
                            Span(
                                name=s.name,
                                kind=s.kind,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent=s.parent_span_id.hex(),
                                attributes=_attributes(s.attributes),
                                events=[(e.name, _attributes(e.attributes)) for e in s.events],
                                resource=resource,
                            )
                        )

    def named(self, name: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.name == name]


def _attributes(pairs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        which = pair.value.WhichOneof("value")
        values[pair.key] = getattr(pair.value, which) if which else None
    return values


@pytest.fixture
def collector() -> Iterator[Collector]:
    got = Collector()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            got.received(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    got.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield got
    server.shutdown()
    server.server_close()


def otel_env(collector: Collector, **extra: str) -> dict[str, str]:
    return {
        "GLADD_OTEL": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "gladd-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        **extra,
    }


def test_the_daemon_exports_a_tasks_trace_to_an_otlp_collector(
    nodes: Callable[[str], LoggedGladd], upstream: int, collector: Collector
) -> None:
    node = nodes("a")
    node.policies.write_text(POLICIES.format(port=upstream))
    node.start_serving(**otel_env(collector))
    answer = httpx.post(
        f"{node.url}/tasks",
        json={
            "kind": "http.request",
            "payload": {"method": "GET", "url": f"http://127.0.0.1:{upstream}/down"},
        },
        headers={"traceparent": CALLER},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    task_id = str(answer.json()["id"])

    def trace_arrived() -> bool:
        return bool(collector.named("send http.request") and collector.named("GET"))

    wait_until(trace_arrived, timeout=20, what="the task's spans at the collector")
    (send,) = collector.named("send http.request")
    assert (send.trace_id, send.parent) == (CALLER_TRACE, CALLER_SPAN)
    assert send.attributes["messaging.message.id"] == task_id
    assert send.resource["service.name"] == "gladd-e2e"
    assert send.resource["service.instance.id"]
    (process,) = collector.named("process http.request")
    assert (process.trace_id, process.parent) == (CALLER_TRACE, send.span_id)
    assert process.attributes["gladd.task.outcome"] == "dead"
    (call,) = collector.named("GET")
    assert (call.trace_id, call.parent) == (CALLER_TRACE, process.span_id)
    assert call.attributes["http.response.status_code"] == 503
    retries = [attrs for name, attrs in call.events if name == "gladd.retry"]
    assert [(r["gladd.policy"], r["gladd.target"]) for r in retries] == [("quick", "up")] * 2
    shown = httpx.get(f"{node.url}/tasks/{task_id}", timeout=5).json()
    assert shown["traceparent"].split("-")[1:3] == [CALLER_TRACE, send.span_id]
    code, log = node.stop()
    assert code == 0, log
    assert f"traces on: OTLP/HTTP to {collector.url}/v1/traces" in log


def test_the_cli_enqueue_joins_the_trace_in_traceparent_and_exports_before_exiting(
    nodes: Callable[[str], LoggedGladd], collector: Collector
) -> None:
    node = nodes("a")
    node.start_serving()  # traces off in the daemon: the CLI's own span is still exported
    done = run_cli(
        "tasks",
        "enqueue",
        "gladd.sleep",
        "--payload",
        '{"seconds": 0}',
        "--state-dir",
        str(node.state_dir),
        env={**otel_env(collector), "TRACEPARENT": CALLER},
    )
    assert done.returncode == 0, done.stderr
    (send,) = collector.named("send gladd.sleep")  # exported before the command returned
    assert (send.trace_id, send.parent) == (CALLER_TRACE, CALLER_SPAN)
    assert send.attributes["messaging.message.id"] == done.stdout.strip()
    node.stop()


def test_a_cli_enqueue_through_the_daemon_hands_it_the_trace_in_traceparent(
    nodes: Callable[[str], LoggedGladd], collector: Collector
) -> None:
    node = nodes("a")
    node.start_serving(**otel_env(collector))  # traces on in the daemon, off in the CLI
    done = run_cli(
        "tasks",
        "enqueue",
        "gladd.noop",
        "--state-dir",
        str(node.state_dir),
        "--admin-port",
        str(node.port),
        "--policies",
        "/nonexistent/policies.toml",  # the direct way would fail: this goes by the daemon
        env={"TRACEPARENT": CALLER},
    )
    assert done.returncode == 0, done.stderr
    wait_until(lambda: collector.named("send gladd.noop"), timeout=20, what="the send span")
    (send,) = collector.named("send gladd.noop")
    assert (send.trace_id, send.parent) == (CALLER_TRACE, CALLER_SPAN)
    assert send.attributes["messaging.message.id"] == done.stdout.strip()
    node.stop()


def test_with_traces_off_nothing_is_exported(
    nodes: Callable[[str], LoggedGladd], upstream: int, collector: Collector
) -> None:
    node = nodes("a")
    node.policies.write_text(POLICIES.format(port=upstream))
    env = otel_env(collector)
    del env["GLADD_OTEL"]
    node.start_serving(**env)
    answer = httpx.post(
        f"{node.url}/tasks",
        json={
            "kind": "http.request",
            "payload": {"method": "GET", "url": f"http://127.0.0.1:{upstream}/"},
        },
        headers={"traceparent": CALLER},
        timeout=5,
    )
    task_id = answer.json()["id"]

    def dead() -> bool:
        return bool(node.get(f"/tasks/{task_id}").json()["state"] == "dead")

    wait_until(dead, timeout=20, what="the task dead")
    assert node.get(f"/tasks/{task_id}").json()["traceparent"] is None
    code, log = node.stop()  # a daemon with traces on would flush its spans here
    assert code == 0, log
    assert collector.posts == 0
    assert "traces on" not in log


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc': gladd exports OTLP over HTTP only",
        ),
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "unknown exporter 'jaeger'"),
    ],
)
def test_an_exporter_gladd_cannot_use_stops_check_and_run_with_78(
    nodes: Callable[[str], LoggedGladd],
    collector: Collector,
    extra: dict[str, str],
    message: str,
) -> None:
    node = nodes("a")
    checked = run_cli("check", str(node.policies), env=otel_env(collector, **extra))
    assert checked.returncode == 78
    assert message in checked.stderr
    process = node.start(**otel_env(collector, **extra))
    assert process.wait(timeout=30) == 78
    assert message in node.log()
