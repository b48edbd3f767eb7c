"""The HTTP transport against a real HTTP server on 127.0.0.1 (uvicorn in a thread)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from gladd.errors import AttemptTimeout, RetriesExhausted
from gladd.resilience import AttemptClient, Counters, FakeClock, ResilientTransport, guard_for

from ._policies import breaker_policy, retry_policy

pytestmark = pytest.mark.anyio

hits: Counter[str] = Counter()


async def flaky(request: Request) -> PlainTextResponse:
    """503 for the first ``fail`` requests with this ``id``, then 200."""
    key = f"{request.method} {request.query_params['id']}"
    hits[key] += 1
    if hits[key] <= int(request.query_params.get("fail", "1")):
        return PlainTextResponse("sick", status_code=503)
    return PlainTextResponse(f"ok after {hits[key]}")


async def limited(request: Request) -> PlainTextResponse:
    key = request.query_params["id"]
    hits[key] += 1
    if hits[key] == 1:
        wait = request.query_params.get("wait", "1")
        return PlainTextResponse("slow down", status_code=429, headers={"Retry-After": wait})
    return PlainTextResponse("ok")


async def hang(request: Request) -> PlainTextResponse:
    await asyncio.sleep(1.0)
    return PlainTextResponse("too late")


async def trickle(request: Request) -> StreamingResponse:
    """Headers at once, then one byte every 50ms: no single read is slow, the body is."""
    count = int(request.query_params.get("bytes", "40"))

    async def body() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"x"
            await asyncio.sleep(0.05)

    return StreamingResponse(body(), media_type="text/plain")


app = Starlette(
    routes=[
        Route("/flaky", flaky, methods=["GET", "POST"]),
        Route("/limited", limited),
        Route("/hang", hang),
        Route("/trickle", trickle),
    ]
)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=0.2, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def client(
    base_url,
    *,
    timeout=None,
    breaker=None,
    retry_non_idempotent=False,
    cls=httpx.AsyncClient,
    **retry,
):
    clock = FakeClock()  # sleeps between attempts are recorded, not slept
    counters = Counters()
    guard = guard_for(
        name="http",
        target="local",
        retry=retry_policy(**({"jitter": "none", "base_delay": 0.1} | retry)),
        breaker=breaker,
        timeout=timeout,
        sinks=[counters],
        clock=clock,
    )
    transport = ResilientTransport(guard, retry_non_idempotent=retry_non_idempotent)
    return cls(base_url=base_url, transport=transport), clock, counters


async def test_5xx_then_success(base_url):
    http, clock, counters = client(base_url)
    async with http:
        response = await http.get("/flaky", params={"id": "a", "fail": "2"})
    assert response.status_code == 200
    assert response.text == "ok after 3"
    assert clock.slept == [0.1, 0.2]
    assert counters.figures().retries == 2


async def test_gives_up_returning_the_last_5xx_response(base_url):
    http, _, _ = client(base_url, attempts=2)
    async with http:
        response = await http.get("/flaky", params={"id": "b", "fail": "5"})
    assert response.status_code == 503
    assert response.text == "sick"


async def test_429_waits_as_told_by_retry_after(base_url):
    http, clock, _ = client(base_url)
    async with http:
        response = await http.get("/limited", params={"id": "c", "wait": "2"})
    assert response.status_code == 200
    assert clock.slept == [2.0]


async def test_retry_after_beyond_the_cap_returns_at_once(base_url):
    http, clock, _ = client(base_url, retry_after_cap=5)
    async with http:
        response = await http.get("/limited", params={"id": "d", "wait": "600"})
    assert response.status_code == 429
    assert clock.slept == []


async def test_post_is_not_retried_by_default(base_url):
    http, clock, _ = client(base_url)
    async with http:
        response = await http.post("/flaky", params={"id": "e"})
    assert response.status_code == 503
    assert hits["POST e"] == 1
    assert clock.slept == []


async def test_post_retried_when_the_binding_says_so(base_url):
    http, _, _ = client(base_url, retry_non_idempotent=True)
    async with http:
        response = await http.post("/flaky", params={"id": "f"})
    assert response.status_code == 200
    assert hits["POST f"] == 2


async def test_hanging_endpoint_hits_the_attempt_timeout(base_url):
    http, _, counters = client(base_url, timeout=0.1, attempts=2)
    started = time.monotonic()
    async with http:
        with pytest.raises(RetriesExhausted) as info:
            await http.get("/hang")
    assert type(info.value.last).__name__ == "AttemptTimeout"
    assert counters.figures().attempt_timeouts == 2
    assert time.monotonic() - started < 0.9


async def test_connection_refused_is_retried_then_exhausted():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    http, clock, _ = client(f"http://127.0.0.1:{port}", attempts=3)
    async with http:
        with pytest.raises(RetriesExhausted) as info:
            await http.post("/x")  # a refused connect is safe to retry even for POST
    assert isinstance(info.value.last, httpx.ConnectError)
    assert len(clock.slept) == 2


async def test_open_circuit_serves_the_cached_response_with_its_age(base_url):
    http, clock, counters = client(
        base_url,
        attempts=1,
        breaker=breaker_policy(failures=1, fallback="cache", open_for=999, max_open_for=999),
    )
    async with http:
        good = await http.get("/flaky", params={"id": "g", "fail": "0"})
        assert good.text == "ok after 1"
        clock.advance(42)
        assert (await http.get("/flaky", params={"id": "h", "fail": "1"})).status_code == 503
        served = await http.get("/flaky", params={"id": "g", "fail": "0"})
    assert served.status_code == 200
    assert served.text == "ok after 1"
    assert served.headers["age"] == "42"
    assert hits["GET g"] == 1  # the open circuit never called the server
    assert counters.figures().cache_hits == 1


# A body trickled a byte every 50ms for 2s: no single read is slow, the attempt is.


async def test_a_trickled_body_is_cut_at_the_attempt_timeout_and_retried(base_url):
    http, clock, counters = client(base_url, timeout=0.3, attempts=2, cls=AttemptClient)
    started = time.monotonic()
    async with http:
        with pytest.raises(RetriesExhausted) as info:
            await http.get("/trickle")
    took = time.monotonic() - started
    assert isinstance(info.value.last, AttemptTimeout)
    assert counters.figures().attempt_timeouts == 2  # both attempts, each cut at 0.3s
    assert len(clock.slept) == 1
    assert 0.5 < took < 1.5  # two attempts of 0.3s, not the body's 2s each


async def test_a_streamed_trickled_body_is_cut_at_the_attempt_deadline(base_url):
    http, _, _ = client(base_url, timeout=0.3, attempts=2, cls=AttemptClient)
    started = time.monotonic()
    received: list[bytes] = []

    async def read_streamed() -> None:
        async with http.stream("GET", "/trickle") as response:
            async for chunk in response.aiter_bytes():
                received.append(chunk)  # noqa: PERF401 - kept as they come: the read fails

    async with http:
        with pytest.raises(AttemptTimeout) as info:
            await read_streamed()
    took = time.monotonic() - started
    assert info.value.attempt == 1
    assert received  # the caller got what arrived in time
    assert took < 1.0


async def test_a_plain_client_is_bounded_too_while_it_reads_the_body(base_url):
    http, _, _ = client(base_url, timeout=0.3, attempts=2)
    started = time.monotonic()
    async with http:
        with pytest.raises(AttemptTimeout):
            await http.get("/trickle")
    assert time.monotonic() - started < 1.0


async def test_a_body_that_arrives_in_time_is_read_whole(base_url):
    http, _, counters = client(base_url, timeout=2.0, cls=AttemptClient)
    async with http:
        response = await http.get("/trickle", params={"bytes": "5"})
        async with http.stream("GET", "/trickle", params={"bytes": "5"}) as streamed:
            chunks = [chunk async for chunk in streamed.aiter_bytes()]
    assert response.text == "xxxxx"
    assert response.elapsed.total_seconds() > 0
    assert b"".join(chunks) == b"xxxxx"
    assert counters.figures().attempt_timeouts == 0
