"""A breaker opened by real failures keeps its state across a compatible reload."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Gladd

pytestmark = pytest.mark.e2e


POLICIES = """
[executor]
retry = "once"
[retry.once]
attempts = 1
deadline = "1h"
[breaker.up]
mode = "{mode}"
failures = {failures}
open_for = "1h"
max_open_for = "2h"
[services.up]
breaker = "up"
timeout = "2s"
hosts = ["127.0.0.1:{port}"]
"""


def breaker_check(gladd: Gladd) -> dict[str, Any]:
    check: dict[str, Any] = gladd.get("/health").json()["checks"]["breakers:open"][0]
    return check


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def generation(gladd: Gladd) -> int:
    return int(gladd.get("/health").json()["checks"]["policies:generation"][0]["observedValue"])


def test_an_open_breaker_stays_open_across_a_threshold_change(gladd: Gladd, upstream: int) -> None:
    gladd.policies.write_text(POLICIES.format(mode="consecutive", failures=2, port=upstream))
    gladd.start_ready()
    url = f"http://127.0.0.1:{upstream}/status"
    for _ in range(3):
        httpx.post(
            f"{gladd.url}/tasks",
            json={"kind": "http.request", "payload": {"method": "GET", "url": url}},
            timeout=5,
        ).raise_for_status()
    wait_until(lambda: breaker_check(gladd)["observedValue"] == 1, "the breaker opened")
    assert "up for up (open, probe in" in breaker_check(gladd)["output"]

    # A compatible change (a threshold) keeps the circuit open: no probe for an hour.
    gladd.policies.write_text(POLICIES.format(mode="consecutive", failures=3, port=upstream))
    wait_until(lambda: generation(gladd) == 2, "generation 2 served")
    assert breaker_check(gladd)["observedValue"] == 1
    assert "up for up (open, probe in" in breaker_check(gladd)["output"]

    # A mode change cannot keep the window: the breaker resets, and says so in the log.
    gladd.policies.write_text(POLICIES.format(mode="ratio", failures=3, port=upstream))
    wait_until(lambda: generation(gladd) == 3, "generation 3 served")
    wait_until(lambda: breaker_check(gladd)["observedValue"] == 0, "the breaker reset")
    code, err = gladd.stop()
    assert code == 0
    assert "breaker.up.failures 2 → 3" in err
    assert "breaker.up.mode consecutive → ratio" in err
    assert "was reset" in err
