"""Where a plugin's handler meets the executor: its kinds, and its errors made precise.

Every error leaving a handler is mapped here so the task history names the plugin and the
service, and so the executor's retry decision fits the failure:

- a :class:`~gladd.plugins.errors.ServiceCallError` gets the plugin's name; one that came
  with a ``Retry-After`` becomes ``RetryLater`` after exactly that delay;
- an open circuit (:class:`~gladd.errors.BreakerOpen`, no fallback) postpones the task
  until the breaker's next probe without spending an attempt — the call failed fast;
- an httpx transport error (connect refused, reset) keeps its type — so it is retried as
  before — with a message naming the plugin and the service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import httpx

from gladd.errors import BreakerOpen, ResilienceTimeout, RetriesExhausted
from gladd.executor.kinds import RegisteredKind, RetryLater, RunnableCheck, Snooze, TaskContext
from gladd.plugins.api import ANY_SERVICE, SERVICE_EXTENSION, EnqueueContext, Plugin, TaskKind
from gladd.plugins.errors import ServiceCallError, ServiceTimeout, ServiceUnavailable
from gladd.policies import Policies, ServiceBinding

BREAKER_SNOOZE = 30.0
"""How long to postpone a task when an isolated breaker gives no time for its next probe."""
PROBE_SNOOZE = 0.5
"""How long to postpone a task while another task's call probes a half-open breaker."""


def plugin_kinds(
    plugins: Iterable[Plugin], settings: Callable[[str], Any] = lambda _: None
) -> list[RegisteredKind]:
    """The executor's kinds for ``plugins``: register them, and enqueue validates payloads
    (and runs each kind's ``check`` with ``settings(plugin name)``, read at enqueue)."""
    return [
        RegisteredKind(
            name=kind.name,
            handler=_wrap(plugin.name, kind),
            payload_model=kind.payload,
            plugin=plugin.name,
            services=tuple(s for s in plugin.services if s != ANY_SERVICE),
            runnable=_runnable(plugin, kind, settings),
            description=kind.description,
        )
        for plugin in plugins
        for kind in plugin.kinds
    ]


def plugin_services(plugin: Plugin, policies: Policies) -> dict[str, ServiceBinding]:
    """The ``[services.*]`` bindings ``plugin`` may call under ``policies``, by name."""
    if plugin.any_service:
        return dict(policies.services)
    return {s: policies.services[s] for s in plugin.services if s in policies.services}


def _runnable(
    plugin: Plugin, kind: TaskKind, settings: Callable[[str], Any]
) -> RunnableCheck | None:
    check = kind.check
    if check is None:
        return None

    def runnable(payload: Any, policies: Policies) -> None:
        ctx = EnqueueContext(
            services=plugin_services(plugin, policies), settings=settings(plugin.name)
        )
        check(ctx, payload)

    return runnable


def _wrap(plugin: str, kind: TaskKind) -> Any:
    handler = kind.handler
    if kind.is_async:

        async def run_async(ctx: TaskContext, payload: Any) -> Any:
            try:
                return await handler(ctx, payload)
            except Exception as exc:
                mapped = boundary_error(plugin, exc, ctx)
                if mapped is exc:
                    raise
                raise mapped from exc

        run_async.__wrapped__ = handler  # type: ignore[attr-defined]
        return run_async

    # A plain function stays one, so the executor runs it in a worker thread.
    def run_sync(ctx: TaskContext, payload: Any) -> Any:
        try:
            return handler(ctx, payload)
        except Exception as exc:
            mapped = boundary_error(plugin, exc, ctx)
            if mapped is exc:
                raise
            raise mapped from exc

    run_sync.__wrapped__ = handler  # type: ignore[attr-defined]
    return run_sync


def boundary_error(plugin: str, exc: Exception, ctx: TaskContext | None = None) -> Exception:
    """What ``exc`` should become as it leaves ``plugin``'s handler (``exc`` itself if as is)."""
    if isinstance(exc, ServiceCallError):
        if exc.plugin is None:
            exc.plugin = plugin
        if isinstance(exc, ServiceUnavailable) and exc.retry_after is not None:
            return RetryLater(exc.retry_after, f"{exc} (retry after {exc.retry_after:g}s)")
        return exc
    if isinstance(exc, BreakerOpen):
        wait = exc.retry_in
        if wait is None:
            wait = PROBE_SNOOZE if exc.state == "half_open" else BREAKER_SNOOZE
        if ctx is not None:
            ctx.logger.info(
                "{}: circuit breaker {} is {}; task {} postponed {:.3g}s",
                plugin,
                exc.breaker,
                exc.state,
                ctx.id,
                wait,
            )
        return Snooze(wait)
    if isinstance(exc, RetriesExhausted) and isinstance(exc.last, httpx.TransportError):
        return _transport_error(plugin, exc.last, f" (gave up after {exc.attempts} attempts)")
    if isinstance(exc, httpx.TransportError):
        return _transport_error(plugin, exc, "")
    if isinstance(exc, ResilienceTimeout):
        return ServiceTimeout(exc.policy, f"did not answer in time: {exc}", plugin=plugin)
    return exc


def _transport_error(plugin: str, exc: httpx.TransportError, suffix: str) -> Exception:
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # raised outside a request
        request = None
    service = request.extensions.get(SERVICE_EXTENSION, "?") if request is not None else "?"
    if isinstance(exc, httpx.TimeoutException):
        return ServiceTimeout(str(service), f"did not answer in time: {exc}{suffix}", plugin=plugin)
    target = f" at {request.url.host}" if request is not None else ""
    what = str(exc) or type(exc).__name__
    message = f"{plugin}: service {service} could not be reached{target}: {what}{suffix}"
    try:
        return type(exc)(message, request=request)
    except TypeError:  # an unusual subclass: keep the original
        return exc
