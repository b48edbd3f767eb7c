"""An httpx transport that runs every request through a :class:`Guard`.

- A response with a retryable status (5xx except 501/505, 408, 429) is a failure to the
  guard: it counts against the breaker and is retried if the policy's ``on`` lists its
  class, after the server's ``Retry-After`` when it sends one (up to ``retry_after_cap``;
  beyond the cap the response is returned at once rather than slept on).
- Only idempotent methods (RFC 9110 §9.2.2), or requests carrying an ``Idempotency-Key``,
  are retried, unless the binding sets ``retry_non_idempotent``; a failure to *connect* is
  retried for any method, since the request never left.
- A response that will be retried is closed, so its connection goes back to the pool; when
  the guard gives up on a retryable status, that last response is returned, unread.
- The attempt timeout bounds the whole attempt, body included: a server that trickles a
  byte at a time cannot hold an attempt open past it. A body the caller does not stream
  (every call through an :class:`AttemptClient` but ``client.stream()``) is read inside the
  guarded attempt, so a slow body is an attempt timeout like a slow answer, retried the
  same way; a streamed body is cut when the attempt's deadline passes while the caller
  reads it (:class:`~gladd.errors.AttemptTimeout`, or
  :class:`~gladd.errors.TotalTimeout` when the total deadline came first).
- Flow control (:mod:`gladd.resilience.outbound`): with an :class:`Outbound`, each attempt
  is admitted first — a bulkhead slot, a rate token — outside its timeout, and a 429/503
  with ``Retry-After`` begins the service's cooldown, failing the request with
  :class:`~gladd.errors.ServiceCooldown` instead of retrying. A streamed response holds
  its slot until it is closed; any other, until its attempt ends.
- With traces on (:mod:`gladd.tracing`), each request is a CLIENT span — all its attempts
  and sleeps — whose context the request carries to the server (``traceparent``); the
  guard's decisions on it are that span's events (:mod:`gladd.resilience.spans`).
- With ``fallback = "cache"`` the body of each good GET response is read and kept; while
  the circuit is open a copy is served with an ``Age`` header (RFC 9111 §5.1) giving its
  age in seconds. With ``fallback = "static"`` the value becomes a response: a table with
  ``status``, ``headers`` and ``body``, or anything else as a JSON body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from gladd import tracing
from gladd.errors import AttemptTimeout, ResilienceTimeout, RetriesExhausted, TotalTimeout
from gladd.resilience.bulkhead import Slot
from gladd.resilience.classify import RetryableStatus, status_class
from gladd.resilience.fallback import NO_CACHE
from gladd.resilience.guard import Guard
from gladd.resilience.outbound import Outbound
from gladd.resilience.retry_after import parse_retry_after

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_CACHEABLE_METHODS = frozenset({"GET"})

STREAM_EXTENSION = "gladd_stream"
"""Request extension set by :class:`AttemptClient`: True when the caller streams the body."""


class AttemptClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that tells its transport whether the caller streams the
    response, so that a body read whole is read inside the attempt, under its timeout."""

    async def send(
        self, request: httpx.Request, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        request.extensions = {**request.extensions, STREAM_EXTENSION: stream}
        return await super().send(request, stream=stream, **kwargs)


@dataclass(slots=True)
class _Call:
    """One request through the guard: when it began, and the responses its attempts got."""

    began: float
    fresh: list[httpx.Response] = field(default_factory=list)
    attempts: int = 0
    outbound: Outbound | None = None
    policy: str = ""
    slot: Slot | None = None
    """The current attempt's, when admitted."""

    async def admit(self) -> Slot:
        assert self.outbound is not None
        self.slot = await self.outbound.admit(self.policy)
        return self.slot


class ResilientTransport(httpx.AsyncBaseTransport):
    """Applies ``guard`` to each request sent through ``inner``."""

    def __init__(
        self,
        guard: Guard,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        retry_non_idempotent: bool = False,
        outbound: Outbound | None = None,
    ) -> None:
        self.guard = guard
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.retry_non_idempotent = retry_non_idempotent
        self.outbound = outbound

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        traces = tracing.current()
        if traces is None:
            return await self._handle(request)
        guard = self.guard
        with traces.calling(request, service=guard.target, policy=guard.name) as span:
            response = await self._handle(request)
            traces.answered(span, response.status_code)
            return response

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        idempotent = (
            self.retry_non_idempotent
            or request.method in IDEMPOTENT_METHODS
            or "idempotency-key" in request.headers
        )
        caching = self._caching() and request.method in _CACHEABLE_METHODS
        key: Hashable = f"{request.method} {request.url}" if caching else NO_CACHE
        call = _Call(began=anyio.current_time())
        outbound = self.outbound
        admit = None
        if outbound is not None:
            call.outbound, call.policy = outbound, self.guard.name
            outbound.check(call.policy)  # cooling down: fail at once, send nothing
            if outbound.limited:
                admit = call.admit
        try:
            if admit is None:
                result = await self.guard.call(
                    self._send, request, call, key=key, idempotent=idempotent
                )
            else:
                result = await self.guard.call_admitted(
                    self._send, request, call, admit=admit, key=key, idempotent=idempotent
                )
        except RetriesExhausted as exc:
            if isinstance(exc.last, RetryableStatus):
                response: httpx.Response = exc.last.response
                return response
            raise
        except RetryableStatus as exc:  # a status the policy does not retry
            response = exc.response
            return response
        if call.fresh and result is call.fresh[-1]:
            return result
        return self._fallback_response(result, key, request)

    def _caching(self) -> bool:
        breaker = self.guard.breaker
        return breaker is not None and breaker.cache is not None

    async def _send(self, request: httpx.Request, call: _Call) -> httpx.Response:
        call.attempts += 1
        outbound = call.outbound
        if outbound is not None and call.attempts > 1:
            outbound.check(call.policy)  # a cooldown that began while this call slept
        began = anyio.current_time()
        response = await self.inner.handle_async_request(request)
        if outbound is not None:
            await self._cool_down(outbound, call, response)
        call.fresh.append(response)
        if request.method in _CACHEABLE_METHODS and self._caching():
            await response.aread()
        elif request.extensions.get(STREAM_EXTENSION, True):
            self._bound_stream(response, call, began)
            if call.slot is not None and isinstance(response.stream, httpx.AsyncByteStream):
                response.stream = _SlotStream(response.stream, call.slot.hand_over())
        else:
            await _read_body(response)  # here, under this attempt's timeout
        status = response.status_code
        if status_class(status) is not None:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RetryableStatus(response, status, retry_after)
        return response

    async def _cool_down(self, outbound: Outbound, call: _Call, response: httpx.Response) -> None:
        """Raise :class:`ServiceCooldown` if this answer begins (or meets) a cooldown."""
        retry = self.guard.retry
        cap = retry.retry_after_cap if retry is not None else None
        error = outbound.cool_down(
            call.policy, response.status_code, response.headers.get("retry-after"), cap
        )
        if error is not None:
            await response.aclose()
            raise error

    def _bound_stream(self, response: httpx.Response, call: _Call, began: float) -> None:
        """Cut the body the caller streams when this attempt's time is up."""
        guard = self.guard
        cuts: list[tuple[float, ResilienceTimeout]] = []
        if guard.timeout is not None:
            expired = AttemptTimeout(guard.name, guard.timeout, call.attempts)
            cuts.append((began + guard.timeout, expired))
        deadline = guard.retry.deadline if guard.retry is not None else None
        if deadline is not None:
            cuts.append((call.began + deadline, TotalTimeout(guard.name, deadline, call.attempts)))
        stream = response.stream
        if cuts and isinstance(stream, httpx.AsyncByteStream):
            at, error = min(cuts, key=lambda cut: cut[0])
            response.stream = _BoundStream(stream, at, error)

    def _fallback_response(
        self, value: Any, key: Hashable, request: httpx.Request
    ) -> httpx.Response:
        if isinstance(value, httpx.Response):  # the cached last good response
            age = self.guard.cache_age(key) or 0.0
            headers = [(k, v) for k, v in value.headers.raw if k.lower() != b"age"]
            headers.append((b"age", str(int(age)).encode()))
            return httpx.Response(
                value.status_code,
                headers=headers,
                content=value.content,
                request=request,
                extensions={"gladd_fallback": "cache", "gladd_cache_age": age},
            )
        if isinstance(value, dict) and {"status", "body"} & value.keys():
            return httpx.Response(
                int(value.get("status", 200)),
                headers=value.get("headers", {}),
                content=str(value.get("body", "")).encode(),
                request=request,
                extensions={"gladd_fallback": "static"},
            )
        return httpx.Response(
            200, json=value, request=request, extensions={"gladd_fallback": "static"}
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _read_body(response: httpx.Response) -> None:
    """Read the raw body now and hand the client an in-memory stream of it, which the
    client then reads (and decodes) as it would have read the network."""
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        return
    try:
        body = b"".join([chunk async for chunk in stream])
    finally:
        await stream.aclose()
    response.stream = httpx.ByteStream(body)


class _BoundStream(httpx.AsyncByteStream):
    """A response body that raises ``error`` once the loop clock passes ``deadline``."""

    def __init__(self, inner: httpx.AsyncByteStream, deadline: float, error: Exception) -> None:
        self.inner = inner
        self.deadline = deadline
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = aiter(self.inner)
        while True:
            with anyio.move_on_after(self.deadline - anyio.current_time()) as scope:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
            if scope.cancelled_caught:
                raise self.error
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class _SlotStream(httpx.AsyncByteStream):
    """A streamed body that gives its request's bulkhead slot back when closed."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.release()
