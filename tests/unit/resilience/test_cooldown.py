"""The cooldown registry and the token bucket: pure state over given clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from gladd.resilience.cooldown import Cooldowns
from gladd.resilience.tokens import TokenBucket

T0 = datetime(2030, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


def test_begin_extends_but_never_shortens_and_ends_on_time():
    heard: list[tuple[str, datetime, str]] = []
    cooldowns = Cooldowns(now=lambda: T0)
    cooldowns.on_begin.append(lambda *args: heard.append(args))
    assert cooldowns.begin("api", T0 + 2 * S, "HTTP 429") is True
    assert cooldowns.begin("api", T0 + 1 * S, "HTTP 429") is False  # shorter: no change
    assert cooldowns.begin("api", T0 + 3 * S, "HTTP 503") is True
    assert cooldowns.begin("api", T0 + 9 * S, "elsewhere", notify=False) is True
    assert heard == [("api", T0 + 2 * S, "HTTP 429"), ("api", T0 + 3 * S, "HTTP 503")]
    assert cooldowns.until("api") == T0 + 9 * S
    assert cooldowns.until("api", T0 + 9 * S) is None  # over at until
    assert cooldowns.active() == {}


def test_end_resumes_at_once_and_naive_times_are_refused():
    cooldowns = Cooldowns(now=lambda: T0)
    cooldowns.begin("api", T0 + S, "HTTP 429")
    assert cooldowns.end("api") is True
    assert cooldowns.until("api") is None
    assert cooldowns.end("api") is False
    with pytest.raises(ValueError, match="timezone-aware"):
        cooldowns.begin("api", datetime(2030, 1, 1), "naive")


@pytest.mark.anyio
async def test_async_hooks_run_in_the_service_and_a_broken_one_harms_nothing():
    heard: list[str] = []

    async def store_pause(service: str, until: datetime, reason: str) -> None:
        heard.append(f"{service} {until:%S} {reason}")

    def broken(service: str, until: datetime, reason: str) -> None:
        raise RuntimeError("boom")

    cooldowns = Cooldowns(now=lambda: T0)
    cooldowns.on_begin += [broken, store_pause]
    assert cooldowns.begin("api", T0 + 2 * S, "HTTP 429")  # queued before the service runs
    async with anyio.create_task_group() as tg:
        await tg.start(cooldowns.run)
        cooldowns.begin("api", T0 + 4 * S, "HTTP 503")
        with anyio.fail_after(5):
            while len(heard) < 2:
                await anyio.sleep(0.001)
        tg.cancel_scope.cancel()
    assert heard == ["api 02 HTTP 429", "api 04 HTTP 503"]


def test_tokens_come_one_per_period_and_queue_in_order():
    bucket = TokenBucket(4.0)
    assert bucket.reserve(10.0, max_wait=1.0) == 0.0
    assert bucket.reserve(10.0, max_wait=1.0) == 0.25
    assert bucket.reserve(10.0, max_wait=1.0) == 0.5
    assert bucket.reserve(10.0, max_wait=0.6) is None  # due at 0.75: nothing taken
    bucket.refund()  # the third was cancelled
    assert bucket.reserve(10.0, max_wait=1.0) == 0.5
    assert bucket.reserve(11.0, max_wait=0.0) == 0.0  # caught up after a quiet second


def test_a_quiet_spell_gives_no_more_than_the_burst_and_a_new_rate_applies_at_once():
    bucket = TokenBucket(1.0, burst=2)
    assert [bucket.reserve(0.0, 0.0), bucket.reserve(0.0, 0.0)] == [0.0, 0.0]
    assert bucket.reserve(100.0, 0.0) == 0.0
    assert bucket.reserve(100.0, 0.0) == 0.0
    assert bucket.reserve(100.0, 0.0) is None
    bucket.reconfigure(10.0)
    assert bucket.reserve(100.0, 1.0) == pytest.approx(0.1)
