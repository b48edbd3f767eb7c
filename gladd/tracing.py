"""Traces through OpenTelemetry, when they are switched on (``GLADD_OTEL=true``, with the
``gladd[otel]`` extra installed).

Off — the default — nothing here imports OpenTelemetry, and each hook on the hot path is one
``tracing.current() is None`` test. On:

- an enqueue (CLI, HTTP, Python API, a handler's ``ctx.enqueue``) is a PRODUCER span
  ``send KIND``, a child of the caller's context (an HTTP request's ``traceparent`` header,
  the CLI's ``TRACEPARENT`` environment variable, the application's current span); its W3C
  ``traceparent`` is stored with the task;
- each attempt is a CONSUMER span ``process KIND``: a child of the stored ``traceparent``,
  so one trace follows the work from the caller through every attempt, and linked to it as
  the messaging semantic conventions ask;
- an outbound call through a service client is a CLIENT span named by its method, with the
  ``traceparent`` injected into the request; each resilience decision in it (a retry, a
  ``Retry-After`` sleep, a breaker rejection, a fallback, a budget refusal, a timeout) is a
  span event naming its policy (:class:`gladd.resilience.spans.SpanEvents`, a sink of the
  resilience engine);
- optionally (``GLADD_OTEL_STORE_SPANS=true``), each store operation is a CLIENT span.

Libraries record through the OpenTelemetry *API*, so an application embedding
:class:`gladd.Client` traces into the provider it set up itself; programs install the *SDK*:
:func:`install` — the daemon and the CLI — builds a tracer provider configured by the
standard ``OTEL_*`` variables (``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ...), which the SDK itself reads.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gladd.errors import SettingsError

if TYPE_CHECKING:
    import httpx
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

INSTRUMENTATION = "gladd"
MESSAGING_SYSTEM = "gladd"
EXTRA_MISSING = (
    "GLADD_OTEL is on, but OpenTelemetry is not installed: install the extra "
    "(pip install 'gladd[otel]'), or set GLADD_OTEL=false"
)
SHUTDOWN_WAIT = 5.0
"""Seconds a stopping program waits for its last spans to be exported."""
_EXPORTERS = frozenset({"otlp", "console", "none"})
_PROTOCOLS = frozenset({"http/protobuf"})

_current: Tracing | None = None


def current() -> Tracing | None:
    """The tracing in force, or None when traces are off."""
    return _current


def enable(provider: TracerProvider | None = None, *, store_spans: bool = False) -> Tracing:
    """Trace from now on, into ``provider`` (default: OpenTelemetry's global provider)."""
    global _current  # noqa: PLW0603 - one switch per process, as OpenTelemetry's own provider
    try:
        from opentelemetry import trace  # noqa: PLC0415 - only when switched on
    except ImportError:
        raise SettingsError(EXTRA_MISSING) from None
    from gladd.version import __version__  # noqa: PLC0415

    _current = Tracing(
        tracer=trace.get_tracer(INSTRUMENTATION, __version__, tracer_provider=provider),
        store_spans=store_spans,
    )
    return _current


def disable() -> None:
    """Stop tracing (tests; a program's exit)."""
    global _current  # noqa: PLW0603
    _current = None


def setup_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why :func:`install` would refuse (the extra missing, an exporter gladd cannot use),
    found without importing OpenTelemetry: for ``gladd check``."""
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            return EXTRA_MISSING
    return exporter_problem(environ)


def exporter_problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """What is wrong with the ``OTEL_*`` exporter settings, for ``gladd check`` and start-up."""
    chosen = [e.strip() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    unknown = [e for e in chosen if e and e not in _EXPORTERS]
    if unknown:
        return (
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']!r}: unknown exporter "
            f"{unknown[0]!r}; gladd exports with otlp (OTLP over HTTP), console or none"
        )
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name)
        if protocol is not None and protocol.strip() not in _PROTOCOLS:
            return (
                f"{name}={protocol!r}: gladd exports OTLP over HTTP only; set it to "
                "http/protobuf and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's "
                "OTLP/HTTP port (4318 by default)"
            )
        if protocol is not None:
            break  # the traces-specific variable wins over the general one
    return None


def install(
    *, node: str, store_spans: bool = False, environ: Mapping[str, str] = os.environ
) -> Tracing:
    """A program's tracing: an SDK tracer provider, configured by the ``OTEL_*`` variables,
    made OpenTelemetry's global one (so a plugin's own spans are exported with gladd's),
    then :func:`enable`. Raises SettingsError for a missing extra or a bad exporter."""
    try:
        from opentelemetry import trace  # noqa: PLC0415 - only when switched on
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
            BatchSpanProcessor,
            ConsoleSpanExporter,
        )
    except ImportError:
        raise SettingsError(EXTRA_MISSING) from None
    if (problem := exporter_problem(environ)) is not None:
        raise SettingsError(problem)
    from gladd.version import __version__  # noqa: PLC0415

    resource = Resource.create({"service.version": __version__, "service.instance.id": node})
    if resource.attributes.get("service.name", "unknown_service") == "unknown_service":
        resource = resource.merge(Resource({"service.name": "gladd"}))
    # Its sampler: OTEL_TRACES_SAMPLER. Shut down by shutdown(), bounded, not at exit.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    chosen = {e.strip() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    if "otlp" in chosen:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in chosen:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    tracing = enable(provider, store_spans=store_spans)
    tracing.provider = provider
    return tracing


def describe_exporter(environ: Mapping[str, str] = os.environ) -> str:
    """Where the spans go, for the start-up log line."""
    chosen = [e.strip() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    where = []
    for exporter in chosen:
        if exporter == "otlp":
            endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
                environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318").rstrip("/")
                + "/v1/traces"
            )
            where.append(f"OTLP/HTTP to {endpoint}")
        elif exporter:
            where.append(exporter)
    sampler = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    return f"{', '.join(where) or 'none'} (sampler {sampler})"


@dataclass(slots=True)
class Sending:
    """The PRODUCER span of one enqueue; ``traceparent`` is what the task stores."""

    span: Span | None
    traceparent: str | None

    def stored(self, task_id: int, *, created: bool) -> None:
        if self.span is not None:
            self.span.set_attribute("messaging.message.id", str(task_id))
            self.span.set_attribute("gladd.task.created", created)

    def stored_batch(self, count: int, *, created: int) -> None:
        """A batch's span: how many tasks it sent, and how many were new (not a unique
        key's existing task)."""
        if self.span is not None:
            self.span.set_attribute("messaging.batch.message_count", count)
            self.span.set_attribute("gladd.tasks.created", created)


@dataclass(slots=True, kw_only=True)
class Tracing:
    """The spans gladd makes, through one OpenTelemetry tracer."""

    tracer: Tracer
    store_spans: bool = False
    provider: TracerProvider | None = field(default=None)
    """Set by :func:`install`: the provider :meth:`shutdown` flushes."""

    @contextmanager
    def producing(self, kind: str, carrier: Mapping[str, str] | None = None) -> Iterator[Sending]:
        """The span of storing one task of ``kind``; ``carrier`` holds the caller's
        ``traceparent`` (and ``tracestate``) when it came from outside this process."""
        from opentelemetry import propagate, trace  # noqa: PLC0415

        parent = propagate.extract(carrier) if carrier else None
        with self.tracer.start_as_current_span(
            f"send {kind}",
            context=parent,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": kind,
            },
        ) as span:
            yield Sending(span=span, traceparent=_traceparent(span))

    @contextmanager
    def consuming(
        self,
        *,
        kind: str,
        task_id: int,
        attempt: int,
        max_attempts: int,
        traceparent: str | None,
        node: str,
    ) -> Iterator[Span]:
        """One attempt's span: a child of the task's ``traceparent`` and linked to it."""
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )

        parent = None
        links = []
        if traceparent is not None:
            parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
            stored = trace.get_current_span(parent).get_span_context()
            if stored.is_valid:
                links.append(trace.Link(stored, {"gladd.link": "enqueued"}))
            else:
                parent = None
        with self.tracer.start_as_current_span(
            f"process {kind}",
            context=parent if parent is not None else _root(),
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": kind,
                "messaging.message.id": str(task_id),
                "gladd.task.attempt": attempt,
                "gladd.task.max_attempts": max_attempts,
                "gladd.node": node,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    @staticmethod
    def attempt_ended(span: Span, outcome: str, error: BaseException | None) -> None:
        """What the attempt came to: ``gladd.task.outcome``, and the error it failed with."""
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        span.set_attribute("gladd.task.outcome", outcome)
        if error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

    @contextmanager
    def calling(self, request: httpx.Request, *, service: str, policy: str) -> Iterator[Span]:
        """A CLIENT span for one outbound request (all its retries), injected into it."""
        from opentelemetry import propagate, trace  # noqa: PLC0415

        url = request.url
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "url.full": _redacted(str(url)),
            "server.address": url.host,
            "gladd.service": service,
            "gladd.policy": policy,
        }
        if url.port is not None:
            attributes["server.port"] = url.port
        with self.tracer.start_as_current_span(
            request.method, kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            propagate.inject(request.headers)
            yield span

    @staticmethod
    def answered(span: Span, status: int) -> None:
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        span.set_attribute("http.response.status_code", status)
        if status >= 400:  # a client span's error (HTTP semantic conventions)
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))

    @contextmanager
    def storing(self, operation: str, system: str, url: str) -> Iterator[None]:
        """One store operation's span (:mod:`gladd.store.traced`)."""
        from opentelemetry import trace  # noqa: PLC0415

        with self.tracer.start_as_current_span(
            f"gladd.store {operation}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "db.system.name": system,
                "db.operation.name": operation,
                "gladd.store": url,
            },
        ):
            yield

    def shutdown(self, wait: float = SHUTDOWN_WAIT) -> bool:
        """Export what is buffered and stop the provider :func:`install` made, waiting at
        most ``wait`` seconds (a collector that is down must not hold up a stop); whether
        it finished in time."""
        provider = self.provider
        if provider is None:
            return True
        flushing = threading.Thread(target=provider.shutdown, name="gladd-otel-stop", daemon=True)
        flushing.start()
        flushing.join(wait)
        return not flushing.is_alive()


def _traceparent(span: Span) -> str | None:
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _root() -> Any:
    """An empty context: an attempt of a task stored without a trace starts its own."""
    from opentelemetry.context import Context  # noqa: PLC0415

    return Context()


def _redacted(url: str) -> str:
    """``url.full`` without credentials or query values (HTTP semantic conventions)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    if parts.username or parts.password:
        netloc = "REDACTED:REDACTED@" + netloc
    query = "?REDACTED" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"
