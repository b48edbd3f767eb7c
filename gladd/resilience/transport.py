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
- With ``fallback = "cache"`` the body of each good GET response is read and kept; while
  the circuit is open a copy is served with an ``Age`` header (RFC 9111 §5.1) giving its
  age in seconds. With ``fallback = "static"`` the value becomes a response: a table with
  ``status``, ``headers`` and ``body``, or anything else as a JSON body.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import httpx

from gladd.errors import RetriesExhausted
from gladd.resilience.classify import RetryableStatus, status_class
from gladd.resilience.fallback import NO_CACHE
from gladd.resilience.guard import Guard
from gladd.resilience.retry_after import parse_retry_after

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_CACHEABLE_METHODS = frozenset({"GET"})


class ResilientTransport(httpx.AsyncBaseTransport):
    """Applies ``guard`` to each request sent through ``inner``."""

    def __init__(
        self,
        guard: Guard,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        retry_non_idempotent: bool = False,
    ) -> None:
        self.guard = guard
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.retry_non_idempotent = retry_non_idempotent

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        idempotent = (
            self.retry_non_idempotent
            or request.method in IDEMPOTENT_METHODS
            or "idempotency-key" in request.headers
        )
        caching = self._caching() and request.method in _CACHEABLE_METHODS
        key: Hashable = f"{request.method} {request.url}" if caching else NO_CACHE
        fresh: list[httpx.Response] = []
        try:
            result = await self.guard.call(
                self._send, request, fresh, key=key, idempotent=idempotent
            )
        except RetriesExhausted as exc:
            if isinstance(exc.last, RetryableStatus):
                response: httpx.Response = exc.last.response
                return response
            raise
        except RetryableStatus as exc:  # a status the policy does not retry
            response = exc.response
            return response
        if fresh and result is fresh[-1]:
            return result
        return self._fallback_response(result, key, request)

    def _caching(self) -> bool:
        breaker = self.guard.breaker
        return breaker is not None and breaker.cache is not None

    async def _send(self, request: httpx.Request, fresh: list[httpx.Response]) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        fresh.append(response)
        status = response.status_code
        if status_class(status) is not None:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RetryableStatus(response, status, retry_after)
        if request.method in _CACHEABLE_METHODS and self._caching():
            await response.aread()
        return response

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
