"""The retry decision: what is retried, Retry-After parsing and capping, idempotency."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from loguru import logger

from gladd.resilience.classify import Classifier, RetryableStatus, error_class, status_class
from gladd.resilience.retry import GiveUp, Retry, RetryPlan, decide
from gladd.resilience.retry_after import http_date, parse_retry_after

from ._policies import retry_policy


def plan(**fields):
    return RetryPlan.from_policy("p", retry_policy(**fields))


def after(p, error, *, attempt=1, elapsed=0.0, idempotent=True):
    return decide(
        p,
        attempt=attempt,
        error=error,
        elapsed=elapsed,
        previous_delay=0.0,
        rng=random.Random(1),
        idempotent=idempotent,
    )


@pytest.fixture
def log_lines():
    lines: list[str] = []
    sink = logger.add(lines.append, format="{level} {message}")
    yield lines
    logger.remove(sink)


# -- Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("120", 120.0), (" 7 ", 7.0)])
def test_retry_after_seconds(value, seconds):
    assert parse_retry_after(value) == seconds


def test_retry_after_http_date_is_measured_from_now():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    header = http_date(now + timedelta(seconds=42))
    assert header == "Fri, 02 Jan 2026 03:04:47 GMT"
    assert parse_retry_after(header, now=now.timestamp()) == 42.0


def test_retry_after_date_in_the_past_means_now():
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_retry_after(http_date(now - timedelta(hours=1)), now=now.timestamp()) == 0.0


@pytest.mark.parametrize(
    "garbage", ["soon", "", "-5", "nan", "inf", "Fri, 99 Jan 2026 03:04:47 GMT", "1e999"]
)
def test_malformed_retry_after_is_absent_and_logged(garbage, log_lines):
    assert parse_retry_after(garbage) is None
    assert any("malformed Retry-After" in line and line.startswith("WARNING") for line in log_lines)


def test_absent_retry_after():
    assert parse_retry_after(None) is None


def test_retry_after_under_the_cap_is_the_delay():
    d = after(plan(retry_after_cap=30), RetryableStatus(None, 429, 12.0))
    assert d == Retry(12.0, "429", 12.0)


def test_retry_after_beyond_the_cap_fails_instead_of_sleeping():
    d = after(plan(retry_after_cap=30), RetryableStatus(None, 503, 31.0))
    assert d == GiveUp("retry_after", "5xx")


def test_retry_after_read_from_an_httpx_status_error():
    request = httpx.Request("GET", "http://x/")
    response = httpx.Response(503, headers={"Retry-After": "3"}, request=request)
    error = httpx.HTTPStatusError("boom", request=request, response=response)
    assert after(plan(), error) == Retry(3.0, "5xx", 3.0)


def test_retry_after_past_the_deadline_gives_up():
    d = after(plan(deadline=10, retry_after_cap=30), RetryableStatus(None, 429, 8.0), elapsed=3.0)
    assert d == GiveUp("deadline", "429")


# -- classification ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (httpx.ConnectError("x"), "connect"),
        (httpx.ConnectTimeout("x"), "connect"),
        (httpx.ReadTimeout("x"), "timeout"),
        (httpx.RemoteProtocolError("x"), "reset"),
        (ConnectionRefusedError(), "connect"),
        (ConnectionResetError(), "reset"),
        (BrokenPipeError(), "reset"),
        (TimeoutError(), "timeout"),
        (ValueError("bug"), None),
        (KeyError("bug"), None),
        (OSError("disk"), None),
    ],
)
def test_error_classes(error, cls):
    assert error_class(error) == cls


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (500, "5xx"),
        (502, "5xx"),
        (503, "5xx"),
        (599, "5xx"),
        (501, None),
        (505, None),
        (408, "408"),
        (429, "429"),
        (200, None),
        (404, None),
        (400, None),
    ],
)
def test_status_classes(status, cls):
    assert status_class(status) == cls


def test_unknown_programming_errors_are_never_retried():
    assert after(plan(), ValueError("bug")) == GiveUp("not_retryable")
    assert after(plan(), AttributeError("bug")) == GiveUp("not_retryable")


def test_only_listed_classes_are_retried():
    p = plan(on=["connect"])
    assert isinstance(after(p, httpx.ConnectError("x")), Retry)
    assert after(p, RetryableStatus(None, 503, None)) == GiveUp("not_retryable")


class Flaky(Exception):
    pass


def test_named_exception_types_are_retried():
    name = f"{__name__}.Flaky"
    p = plan(exceptions=[name])
    assert Classifier.of([], [name]).cause(Flaky()) == name
    assert isinstance(after(p, Flaky()), Retry)
    assert after(plan(), Flaky()) == GiveUp("not_retryable")


def test_named_exception_matched_by_name_without_import():
    c = Classifier.of([], ["nowhere.to.be.Found"])
    found = type("Found", (Exception,), {"__module__": "nowhere.to.be"})
    assert c.cause(found()) == "nowhere.to.be.Found"


def test_attempts_bound_retries_and_count_the_first_call():
    p = plan(attempts=3)
    assert isinstance(after(p, ConnectionResetError(), attempt=2), Retry)
    assert after(p, ConnectionResetError(), attempt=3) == GiveUp("attempts", "reset")
    assert after(plan(attempts=1), ConnectionResetError()) == GiveUp("attempts", "reset")


def test_non_idempotent_only_retried_when_it_never_left():
    p = plan()
    assert after(p, RetryableStatus(None, 503, None), idempotent=False) == GiveUp(
        "non_idempotent", "5xx"
    )
    assert after(p, httpx.ReadError("x"), idempotent=False) == GiveUp("non_idempotent", "reset")
    assert isinstance(after(p, httpx.ConnectError("x"), idempotent=False), Retry)
    assert isinstance(
        after(plan(idempotent_only=False), httpx.ReadError("x"), idempotent=False), Retry
    )
