"""Flow control of a service's requests — bulkhead, outbound rate, cooldown — through the
real transport against a real HTTP server on 127.0.0.1 (uvicorn in a thread).

Rate and retry sleeps run on a :class:`FakeClock` and cooldowns on a fixed wall clock, so
their figures are exact; what depends on the server is awaited as a condition, never slept.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gladd.errors import BulkheadFull, RateLimited, ServiceCooldown
from gladd.policies import Policies, parse_policies
from gladd.resilience import Counters, FakeClock, Resilience
from gladd.resilience.retry_after import http_date

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Seen:
    """What the server saw: requests per key, and how many were in flight at most."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.current = 0
        self.peak = 0
        self.gate = threading.Event()
        self.lock = threading.Lock()


seen = Seen()


async def slow(request: Request) -> PlainTextResponse:
    """Held until the test opens the gate; counts the requests in flight at once."""
    with seen.lock:
        seen.current += 1
        seen.peak = max(seen.peak, seen.current)
    try:
        while not seen.gate.is_set():
            await asyncio.sleep(0.005)
    finally:
        with seen.lock:
            seen.current -= 1
    return PlainTextResponse("done")


async def answer(request: Request) -> PlainTextResponse:
    """``status`` for the first ``fail`` requests with this ``id`` (``Retry-After`` when
    ``after`` is given), then 200."""
    q = request.query_params
    seen.hits[q["id"]] += 1
    if seen.hits[q["id"]] <= int(q.get("fail", "1")):
        headers = {"Retry-After": q["after"]} if "after" in q else {}
        return PlainTextResponse("no", status_code=int(q.get("status", "429")), headers=headers)
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/slow", slow), Route("/answer", answer)])


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
    seen.gate.set()
    server.should_exit = True
    thread.join(5)


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    seen.gate.clear()
    seen.peak = seen.current = 0
    yield
    seen.gate.set()  # nothing stays held


def policies(service: str, retry: str = "") -> Policies:
    text = f"[services.api]\n{service}\n"
    if retry:
        text += f'retry = "r"\n[retry.r]\n{retry}\n'
    return parse_policies(text.encode(), source="test").policies


QUICK = 'attempts = 3\nbackoff = "constant"\nbase_delay = "10ms"\njitter = "none"\n'


class Now:
    """A wall clock that moves only when told."""

    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


def setup(
    base_url: str, p: Policies, **kwargs: object
) -> tuple[httpx.AsyncClient, Resilience, Counters]:
    counters = Counters()
    resilience = Resilience(p, sinks=[counters], **kwargs)  # type: ignore[arg-type]
    http = httpx.AsyncClient(base_url=base_url, transport=resilience.transport("api"))
    return http, resilience, counters


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


# -- bulkhead -----------------------------------------------------------------------------


async def test_the_server_never_sees_more_than_max_in_flight(base_url):
    http, resilience, _ = setup(base_url, policies('max_in_flight = 2\nmax_wait = "30s"'))
    bulkhead = resilience.outbound("api").bulkhead
    answers: list[int] = []

    async def get() -> None:
        answers.append((await http.get("/slow")).status_code)

    async with http, anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(get)
        await until(lambda: seen.current == 2 and bulkhead.waiting == 3)
        assert bulkhead.in_flight == 2
        seen.gate.set()
    assert answers == [200] * 5
    assert seen.peak == 2
    assert bulkhead.in_flight == 0


async def test_the_excess_fails_with_bulkhead_full_after_max_wait(base_url):
    http, resilience, counters = setup(base_url, policies('max_in_flight = 2\nmax_wait = "50ms"'))
    errors: list[BaseException] = []

    async def get() -> None:
        try:
            await http.get("/slow")
        except BulkheadFull as exc:
            errors.append(exc)

    async with http, anyio.create_task_group() as tg:
        tg.start_soon(get)
        tg.start_soon(get)
        await until(lambda: seen.current == 2)
        for _ in range(3):
            tg.start_soon(get)
        await until(lambda: len(errors) == 3)
        seen.gate.set()
    assert seen.peak == 2
    assert {type(e) for e in errors} == {BulkheadFull}
    assert str(errors[0]) == (
        "service 'api': all 2 request slots (max_in_flight) stayed busy for max_wait "
        "0.05s; nothing was sent. Raise [services.api] max_in_flight or max_wait if the "
        "service can take more"
    )
    assert counters.refusals == {("api", "max_in_flight"): 3}
    assert resilience.outbound("api").bulkhead.in_flight == 0


async def test_slots_come_back_after_errors_and_cancellation(base_url):
    http, resilience, _ = setup(base_url, policies("max_in_flight = 1"))
    bulkhead = resilience.outbound("api").bulkhead
    async with http:
        response = await http.get("/answer", params={"id": "err", "status": "500"})
        assert response.status_code == 500
        assert bulkhead.in_flight == 0
        with pytest.raises(httpx.ConnectError):  # nobody listens there
            await http.get("http://127.0.0.1:9/")
        assert bulkhead.in_flight == 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(http.get, "/slow")
            await until(lambda: seen.current == 1)
            assert bulkhead.in_flight == 1
            tg.cancel_scope.cancel()
        assert bulkhead.in_flight == 0
        assert (await http.get("/answer", params={"id": "after", "fail": "0"})).text == "ok"


async def test_a_streamed_response_holds_its_slot_until_closed(base_url):
    http, resilience, _ = setup(base_url, policies("max_in_flight = 1"))
    bulkhead = resilience.outbound("api").bulkhead
    async with http:
        async with http.stream("GET", "/answer", params={"id": "s", "fail": "0"}) as response:
            assert bulkhead.in_flight == 1
            assert await response.aread() == b"ok"
        assert bulkhead.in_flight == 0


async def test_a_reload_raising_the_limit_lets_more_through_without_dropping_any(base_url):
    p = policies('max_in_flight = 1\nmax_wait = "30s"')
    http, resilience, _ = setup(base_url, p)
    answers: list[int] = []

    async def get() -> None:
        answers.append((await http.get("/slow")).status_code)

    async with http, anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(get)
        await until(lambda: seen.current == 1 and resilience.outbound("api").bulkhead.waiting == 2)
        resilience.prepare(policies('max_in_flight = 3\nmax_wait = "30s"')).commit()
        await until(lambda: seen.current == 3)
        resilience.prepare(policies('max_in_flight = 1\nmax_wait = "30s"')).commit()
        assert resilience.outbound("api").bulkhead.in_flight == 3  # lowered: nobody dropped
        seen.gate.set()
    assert answers == [200] * 3


# -- rate ---------------------------------------------------------------------------------


async def test_rate_tokens_are_spaced_exactly_and_retries_take_one_each(base_url):
    clock = FakeClock()
    p = policies('rate = "10/s"', retry=QUICK)
    http, _, counters = setup(base_url, p, clock=clock)
    async with http:
        first = await http.get("/answer", params={"id": "rate", "status": "503"})
        second = await http.get("/answer", params={"id": "rate", "fail": "0"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert seen.hits["rate"] == 3  # two attempts, then one
    # The retry's own 10ms, then the rest of its token's 100ms; the next request's token
    # comes 100ms after the retry's.
    assert clock.slept == pytest.approx([0.01, 0.09, 0.1])
    assert counters.rate_waits == {"api": 2}
    assert counters.rate_wait_seconds["api"] == pytest.approx(0.19)


async def test_no_token_within_max_wait_is_rate_limited(base_url):
    http, _, counters = setup(
        base_url, policies('rate = "1/s"\nmax_wait = "50ms"'), clock=FakeClock()
    )
    async with http:
        await http.get("/answer", params={"id": "r1", "fail": "0"})
        with pytest.raises(RateLimited) as caught:
            await http.get("/answer", params={"id": "r2", "fail": "0"})
    assert isinstance(caught.value, BulkheadFull)
    assert str(caught.value) == (
        "service 'api': its outbound rate of 1/s gave no token within max_wait 0.05s; "
        "nothing was sent. Raise [services.api] rate or max_wait if the service allows more"
    )
    assert seen.hits["r2"] == 0
    assert counters.refusals == {("api", "rate"): 1}


# -- cooldown -----------------------------------------------------------------------------


async def test_429_with_retry_after_cools_the_service_down(base_url):
    now = Now()
    http, resilience, counters = setup(
        base_url, policies("", retry=QUICK), clock=FakeClock(), now=now
    )
    params = {"id": "cool", "after": "2", "fail": "5"}
    async with http:
        with pytest.raises(ServiceCooldown) as first:
            await http.get("/answer", params=params)
        assert (first.value.service, first.value.status) == ("api", 429)
        assert first.value.until == T0 + timedelta(seconds=2)
        assert seen.hits["cool"] == 1  # not retried into the wall
        with pytest.raises(ServiceCooldown) as second:
            await http.get("/answer", params=params)
        assert second.value.until == T0 + timedelta(seconds=2)
        assert seen.hits["cool"] == 1  # nothing sent
        now.at = T0 + timedelta(seconds=2)
        await http.get("/answer", params={"id": "later", "fail": "0"})
    assert resilience.cooldowns.until("api") is None
    assert counters.cooldowns == {"api": 1}
    assert counters.refusals == {("api", "cooldown"): 1}


async def test_the_cooldown_is_capped_by_retry_after_cap(base_url):
    http, resilience, _ = setup(
        base_url, policies("", retry=QUICK + 'retry_after_cap = "5s"'), now=Now()
    )
    async with http:
        with pytest.raises(ServiceCooldown) as caught:
            await http.get("/answer", params={"id": "cap", "after": "3600"})
    assert caught.value.until == T0 + timedelta(seconds=5)
    assert resilience.cooldowns.until("api", T0) == T0 + timedelta(seconds=5)


async def test_503_with_an_http_date_cools_down_too(base_url):
    after = http_date(T0 + timedelta(seconds=10))
    http, _, _ = setup(base_url, policies(""), now=Now())
    async with http:
        with pytest.raises(ServiceCooldown) as caught:
            await http.get("/answer", params={"id": "503", "status": "503", "after": after})
    assert (caught.value.status, caught.value.until) == (503, T0 + timedelta(seconds=10))


async def test_without_cooldown_the_retry_waits_out_retry_after(base_url):
    clock = FakeClock()
    http, resilience, _ = setup(
        base_url, policies("cooldown = false", retry=QUICK), clock=clock, now=Now()
    )
    async with http:
        response = await http.get("/answer", params={"id": "nocool", "after": "2"})
    assert response.text == "ok"
    assert clock.slept == [2.0]
    assert seen.hits["nocool"] == 2
    assert resilience.cooldowns.active() == {}


async def test_429_without_retry_after_is_retried_as_usual(base_url):
    clock = FakeClock()
    http, resilience, _ = setup(base_url, policies("", retry=QUICK), clock=clock, now=Now())
    async with http:
        response = await http.get("/answer", params={"id": "plain429"})
    assert response.text == "ok"
    assert clock.slept == [0.01]
    assert resilience.cooldowns.active() == {}
