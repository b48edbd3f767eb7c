"""Traces for the commands that make spans (``gladd run``, ``gladd tasks enqueue``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loguru import logger

from gladd import tracing
from gladd.settings import Settings


@contextmanager
def traced(settings: Settings, *, quiet: bool = False) -> Iterator[None]:
    """With ``GLADD_OTEL`` on, this command's spans are exported (``OTEL_*`` say where) and
    flushed when it ends; off, nothing of OpenTelemetry is even imported. Raises
    SettingsError for a missing ``gladd[otel]`` or an exporter gladd cannot use."""
    if not settings.otel:
        yield
        return
    traces = tracing.install(node=settings.node_name, store_spans=settings.otel_store_spans)
    if not quiet:
        logger.info("traces on: {}", tracing.describe_exporter())
    try:
        yield
    finally:
        tracing.disable()
        if not traces.shutdown():
            logger.warning(
                "traces: the last spans were not exported within {:g}s; giving up on them",
                tracing.SHUTDOWN_WAIT,
            )
