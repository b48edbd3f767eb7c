"""What one node may send to one service: its bulkhead, its outbound rate, its cooldown.

The transport asks an :class:`Outbound` before each attempt leaves, so the composition of
a service call is, outermost first::

    cooldown check → total deadline → retry (budget) → breaker
        → admission (cooldown check, bulkhead slot, rate token: up to max_wait)
            → attempt timeout → call (its answer may begin a cooldown)

- Admission sits inside the retry loop, so every request that leaves — each retry too —
  takes a rate token and holds a slot. It sits outside the attempt timeout, so waiting for
  a slot or a token never eats an attempt's time (the total deadline still counts it).
- A refused admission is :class:`~gladd.errors.BulkheadFull` (or its subclass
  :class:`~gladd.errors.RateLimited`): local overload, so the breaker's permit is given
  back untouched and the request is not retried — the executor releases the task instead.
- A slot is held from admission until the attempt ends (answer, error, timeout or
  cancellation); when the caller streams the body, until the response is closed.
- A 429 or 503 with ``Retry-After`` from a service with ``cooldown = true`` begins a
  cooldown (:mod:`.cooldown`) until now + min(Retry-After, the retry policy's
  ``retry_after_cap``) and fails the request with :class:`~gladd.errors.ServiceCooldown`
  instead of sleeping and retrying into the wall; while it lasts, every request fails the
  same way at once, and nothing is sent.

One :class:`Outbound` per service lives in the registry (:class:`~.guards.Resilience`) and is
reconfigured in place on a reload, so a new limit applies to the next request while those
in flight keep their slots.
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from gladd.errors import BulkheadFull, RateLimited, ServiceCooldown
from gladd.policies.model import RetryPolicy, ServiceBinding
from gladd.resilience.bulkhead import Bulkhead, Slot
from gladd.resilience.clock import SYSTEM_CLOCK, Clock
from gladd.resilience.cooldown import Cooldowns
from gladd.resilience.events import (
    NO_SINKS,
    CooldownBegan,
    Dispatch,
    OutboundRefused,
    RateWaited,
    RefusalReason,
)
from gladd.resilience.retry_after import parse_retry_after
from gladd.resilience.tokens import TokenBucket

COOLDOWN_STATUSES = frozenset({429, 503})
"""RFC 6585 §4 (Too Many Requests) and RFC 9110 §15.6.4 (Service Unavailable): the two
answers whose ``Retry-After`` asks every client to stay away."""

DEFAULT_RETRY_AFTER_CAP = RetryPolicy().retry_after_cap
"""The cap on a cooldown for a service without a retry policy."""


class Outbound:
    """Admission of the requests this node sends to service ``service``."""

    __slots__ = (
        "_emit_began",
        "_emit_refused",
        "_emit_waited",
        "bucket",
        "bulkhead",
        "clock",
        "cooldown",
        "cooldowns",
        "max_wait",
        "service",
    )

    def __init__(
        self,
        service: str,
        binding: ServiceBinding,
        *,
        cooldowns: Cooldowns,
        clock: Clock = SYSTEM_CLOCK,
        dispatch: Dispatch = NO_SINKS,
    ) -> None:
        self.service = service
        self.cooldowns = cooldowns
        self.clock = clock
        self.bulkhead = Bulkhead(binding.max_in_flight)
        self.bucket: TokenBucket | None = None
        self.configure(binding, dispatch)

    def configure(self, binding: ServiceBinding, dispatch: Dispatch) -> None:
        """Take a binding's limits live: slots out and tokens accrued are kept."""
        self.bulkhead.resize(binding.max_in_flight)
        if binding.rate is None:
            self.bucket = None
        elif self.bucket is None:
            self.bucket = TokenBucket(binding.rate)
        else:
            self.bucket.reconfigure(binding.rate)
        self.max_wait = binding.max_wait
        self.cooldown = binding.cooldown
        self._emit_refused = dispatch.emitter(OutboundRefused)
        self._emit_waited = dispatch.emitter(RateWaited)
        self._emit_began = dispatch.emitter(CooldownBegan)

    @property
    def limited(self) -> bool:
        """Whether requests need admission at all (a bulkhead or a rate)."""
        return self.bulkhead.limit is not None or self.bucket is not None

    # -- cooldown -------------------------------------------------------------------------

    def check(self, policy: str) -> None:
        """Raise :class:`ServiceCooldown` while the service cools down (nothing is sent)."""
        found = self.cooldowns.get(self.service)
        if found is None:
            return
        if self._emit_refused is not None:
            self._refused(policy, "cooldown", None, 0.0)
        raise ServiceCooldown(self.service, found.until, found.status, found.reason)

    def cool_down(
        self, policy: str, status: int, retry_after: str | None, cap: float | None
    ) -> ServiceCooldown | None:
        """The error to fail a request with, after a cooldown its answer began; None when
        the answer asks for none (another status, no or a past ``Retry-After``, or
        ``cooldown = false``)."""
        if not self.cooldown or status not in COOLDOWN_STATUSES or retry_after is None:
            return None
        now = self.cooldowns.now()
        seconds = parse_retry_after(retry_after, now=now.timestamp())
        if seconds is None or seconds <= 0:
            return None
        cap = DEFAULT_RETRY_AFTER_CAP if cap is None else cap
        wait = min(seconds, cap)
        until = now + timedelta(seconds=wait)
        reason = f"HTTP {status} with Retry-After {retry_after.strip()[:40]}"
        if wait < seconds:
            reason += f", capped at {cap:g}s"
        began = self.cooldowns.begin(self.service, until, reason, status=status)
        if began and self._emit_began is not None:
            self._emit_began(
                CooldownBegan(
                    policy=policy,
                    target=self.service,
                    status=status,
                    retry_after=seconds,
                    until=until,
                )
            )
        found = self.cooldowns.get(self.service, now)
        if found is None:  # pragma: no cover - begun above, later than now
            return ServiceCooldown(self.service, until, status, reason)
        return ServiceCooldown(self.service, found.until, found.status, found.reason)

    # -- admission ------------------------------------------------------------------------

    async def admit(self, policy: str) -> Slot:
        """A slot and a rate token for one attempt, waiting up to ``max_wait`` in all.

        Raises :class:`BulkheadFull`, :class:`RateLimited` or :class:`ServiceCooldown`.
        """
        self.check(policy)
        max_wait = self.max_wait
        began = anyio.current_time()
        slot = await self.bulkhead.acquire(max_wait)
        if slot is None:
            limit = self.bulkhead.limit
            self._refused(policy, "max_in_flight", limit, anyio.current_time() - began)
            raise BulkheadFull(self.service, limit or 0, max_wait)
        try:
            if self.bucket is not None:
                left = max(0.0, max_wait - (anyio.current_time() - began))
                await self._token(policy, self.bucket, left)
            self.check(policy)  # it may have begun while we waited
        except BaseException:
            slot.release()
            raise
        return slot

    async def _token(self, policy: str, bucket: TokenBucket, max_wait: float) -> None:
        wait = bucket.reserve(self.clock.monotonic(), max_wait)
        if wait is None:
            self._refused(policy, "rate", bucket.rate, 0.0)
            raise RateLimited(self.service, bucket.rate, self.max_wait)
        if wait <= 0:
            return
        if self._emit_waited is not None:
            self._emit_waited(RateWaited(policy=policy, target=self.service, delay=wait))
        try:
            await self.clock.sleep(wait)
        except BaseException:
            bucket.refund()
            raise

    def _refused(
        self, policy: str, reason: RefusalReason, limit: float | None, waited: float
    ) -> None:
        if self._emit_refused is not None:
            self._emit_refused(
                OutboundRefused(
                    policy=policy, target=self.service, reason=reason, limit=limit, waited=waited
                )
            )
