"""The async shell: one guarded call, composed outermost first as

    total deadline → retry (with budget) → breaker → [admission] → attempt timeout → call

Admission is the caller's (``admit``, e.g. a service's bulkhead and rate, see
:mod:`.outbound`): awaited before each attempt, outside its timeout; a refusal
(:class:`~gladd.errors.BulkheadFull`, :class:`~gladd.errors.ServiceCooldown`) gives the
breaker's permit back untouched and ends the call at once, unretried. So does a
``ServiceCooldown`` raised by an attempt.

The decisions live elsewhere (:mod:`.retry`, :mod:`.breaker`, :mod:`.budget`); this module
only sleeps, calls and reports. Its fast path — first attempt succeeds — allocates nothing
of its own: no loop state, no timer when the call completes without suspending (see
:mod:`.timeout`), and the events it emits are built once per guard.

The total deadline needs no outer cancel scope: the first attempt's timeout is
``min(attempt timeout, deadline)``, later attempts get ``min(attempt timeout, time left)``,
and no sleep is started that would end past the deadline. A cut that came from the
deadline is a :class:`~gladd.errors.TotalTimeout`, otherwise an
:class:`~gladd.errors.AttemptTimeout`.

A guard keeps no per-call state on itself, so any number of tasks may share one.
"""

from __future__ import annotations

import random
import types
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, TypeVar, TypeVarTuple, Unpack, cast

from gladd.errors import (
    AttemptTimeout,
    BreakerOpen,
    BulkheadFull,
    ResilienceTimeout,
    RetriesExhausted,
    RetryBudgetExhausted,
    ServiceCooldown,
    TotalTimeout,
)
from gladd.policies.model import BreakerPolicy, RetryPolicy
from gladd.resilience.breaker import Breaker
from gladd.resilience.budget import RetryBudget
from gladd.resilience.bulkhead import Slot
from gladd.resilience.classify import DEFAULT_CLASSIFIER, RetryableStatus
from gladd.resilience.clock import SYSTEM_CLOCK, Clock
from gladd.resilience.events import (
    NO_SINKS,
    AttemptStarted,
    BreakerStateChanged,
    BudgetExhausted,
    CallRejected,
    CallSucceeded,
    Dispatch,
    FallbackMissed,
    FallbackServed,
    GaveUp,
    GiveUpReason,
    RetryScheduled,
    Sink,
    TimedOut,
)
from gladd.resilience.fallback import Cached
from gladd.resilience.retry import GiveUp, RetryPlan, decide
from gladd.resilience.timeout import Expired, finish_within, within

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_Coroutine = types.CoroutineType
Admit = Callable[[], Awaitable[Slot]]
"""Admission of one attempt: a slot given back with ``done()`` once the attempt is over."""
_REFUSED = (BulkheadFull, ServiceCooldown)
"""Local refusals: never a breaker failure, never retried."""
_MAX_DESCRIBED = 300


def describe(error: BaseException) -> str:
    """``Type: message``, short enough for an event or a log line."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_DESCRIBED else text[: _MAX_DESCRIBED - 1] + "…"


class Guard:
    """Runs async callables under one retry plan, breaker, budget and attempt timeout."""

    __slots__ = (
        "_attempt1",
        "_classifier",
        "_emit_attempt",
        "_emit_budget",
        "_emit_gave_up",
        "_emit_missed",
        "_emit_rejected",
        "_emit_retry",
        "_emit_served",
        "_emit_success",
        "_emit_timeout",
        "_first_is_total",
        "_first_limit",
        "_now",
        "_rng",
        "_sleep",
        "_success1",
        "breaker",
        "budget",
        "dispatch",
        "name",
        "retry",
        "target",
        "timeout",
    )

    def __init__(
        self,
        *,
        name: str,
        target: str = "",
        retry: RetryPlan | None = None,
        breaker: Breaker | None = None,
        budget: RetryBudget | None = None,
        timeout: float | None = None,
        dispatch: Dispatch = NO_SINKS,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.breaker = breaker
        self._now = clock.monotonic
        self._sleep = clock.sleep
        self._rng = rng if rng is not None else random.Random()
        self.configure(retry=retry, budget=budget, timeout=timeout, dispatch=dispatch)

    def configure(
        self,
        *,
        retry: RetryPlan | None,
        budget: RetryBudget | None,
        timeout: float | None,
        dispatch: Dispatch,
    ) -> None:
        """Take a new plan (a live reload); precomputes everything the hot path reads."""
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be longer than 0s (got {timeout})")
        self.retry = retry
        self.budget = budget
        self.timeout = timeout
        self.dispatch = dispatch
        self._classifier = retry.classifier if retry is not None else DEFAULT_CLASSIFIER
        deadline = retry.deadline if retry is not None else None
        if deadline is not None and (timeout is None or deadline < timeout):
            self._first_limit: float | None = deadline
            self._first_is_total = True
        else:
            self._first_limit = timeout
            self._first_is_total = False
        em = dispatch.emitter
        self._emit_attempt = em(AttemptStarted)
        self._emit_success = em(CallSucceeded)
        self._emit_retry = em(RetryScheduled)
        self._emit_gave_up = em(GaveUp)
        self._emit_budget = em(BudgetExhausted)
        self._emit_timeout = em(TimedOut)
        self._emit_rejected = em(CallRejected)
        self._emit_served = em(FallbackServed)
        self._emit_missed = em(FallbackMissed)
        self._attempt1 = AttemptStarted(policy=self.name, target=self.target, attempt=1)
        self._success1 = CallSucceeded(policy=self.name, target=self.target, attempts=1)

    # -- the hot path -------------------------------------------------------------------

    async def call(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        /,
        *args: *Ts,
        key: Hashable = None,
        idempotent: bool = True,
    ) -> T:
        """``await fn(*args)`` under the guard.

        ``key`` names the value for the cache fallback (one slot per key); ``idempotent``
        False limits retries to failures that never reached the callee (``connect``)
        unless the retry policy sets ``idempotent_only = false``.
        """
        breaker = self.breaker
        permit = 0
        if breaker is not None:
            acquired = breaker.acquire()
            if acquired is None:
                return cast(T, self._reject(key, 1, None))
            permit = acquired
        if self._emit_attempt is not None:
            self._emit_attempt(self._attempt1)
        start = self._now()
        limit = self._first_limit
        try:
            awaitable = fn(*args)
            if limit is None:
                result = await awaitable
            elif type(awaitable) is _Coroutine:
                try:
                    pending = awaitable.send(None)
                except StopIteration as done:
                    result = done.value
                else:
                    result = await finish_within(awaitable, pending, limit)
            else:
                result = await within(awaitable, limit)
        except BaseException as exc:  # cancellations are re-raised by _recover
            return await self._recover(
                fn, args, key=key, idempotent=idempotent, error=exc, start=start, permit=permit
            )
        if breaker is not None:
            breaker.record_result(permit, start, key, result)
        if self.budget is not None:
            self.budget.record_call()
        if self._emit_success is not None:
            self._emit_success(self._success1)
        return result

    async def call_admitted(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        /,
        *args: *Ts,
        admit: Admit,
        key: Hashable = None,
        idempotent: bool = True,
    ) -> T:
        """Like :meth:`call`, awaiting ``admit()`` before each attempt, outside its timeout
        (the wait counts against the total deadline): its slot is given back (``done()``)
        when the attempt ends; a refusal it raises ends the call, unretried."""
        start = self._now()
        breaker = self.breaker
        permit = 0
        if breaker is not None:
            acquired = breaker.acquire()
            if acquired is None:
                return cast(T, self._reject(key, 1, None))
            permit = acquired
        slot = await self._admit(admit, permit)
        if self._emit_attempt is not None:
            self._emit_attempt(self._attempt1)
        limit, is_total = self._limit(start)
        began = self._now()
        try:
            result = await _attempt(fn(*args), limit)
        except BaseException as exc:
            slot.done()
            return await self._recover(
                fn,
                args,
                key=key,
                idempotent=idempotent,
                error=exc,
                start=start,
                permit=permit,
                admit=admit,
                is_total=is_total,
            )
        slot.done()
        if self.budget is not None:
            self.budget.record_call()
        self._succeeded(result, key, permit, began, 1)
        return result

    async def _admit(self, admit: Admit, permit: int) -> Slot:
        try:
            return await admit()
        except BaseException:
            if self.breaker is not None:
                self.breaker.release(permit)
            raise

    # -- the failure path ---------------------------------------------------------------

    async def _recover(
        self,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        args: tuple[*Ts],
        *,
        key: Hashable,
        idempotent: bool,
        error: BaseException,
        start: float,
        permit: int,
        admit: Admit | None = None,
        is_total: bool | None = None,
    ) -> T:
        if self.budget is not None:
            self.budget.record_call()
        attempt, previous = 1, 0.0
        if is_total is None:
            is_total = self._first_is_total
        while True:
            failure = self._settle(error, attempt, is_total, permit)
            delay = self._next_delay(failure, attempt, start, previous, idempotent)
            if isinstance(failure, RetryableStatus):
                await _discard(failure)
            await self._sleep(delay)
            previous, attempt = delay, attempt + 1
            if self.breaker is not None:
                acquired = self.breaker.acquire()
                if acquired is None:
                    return cast(T, self._reject(key, attempt, failure))
                permit = acquired
            slot = await self._admit(admit, permit) if admit is not None else None
            limit, is_total = self._limit(start)
            if self._emit_attempt is not None:
                self._emit_attempt(
                    AttemptStarted(policy=self.name, target=self.target, attempt=attempt)
                )
            began = self._now()
            try:
                result = await _attempt(fn(*args), limit)
            except BaseException as exc:
                error = exc
                continue
            finally:
                if slot is not None:
                    slot.done()
            self._succeeded(result, key, permit, began, attempt)
            return result

    def _settle(self, error: BaseException, attempt: int, is_total: bool, permit: int) -> Exception:
        """Name a timeout, tell the breaker, and let cancellations through untouched."""
        if isinstance(error, Expired):
            error = self._timed_out(attempt, is_total)
        breaker = self.breaker
        if not isinstance(error, Exception):
            if breaker is not None:
                breaker.release(permit)
            raise error
        if breaker is not None:
            if isinstance(error, _REFUSED):  # refused before or instead of a verdict
                breaker.release(permit)
            elif self._classifier.transient(error):
                breaker.record_failure(permit, describe(error))
            else:  # the service answered; the error is the caller's own
                breaker.record_success(permit)
        return error

    def _timed_out(self, attempt: int, is_total: bool) -> ResilienceTimeout:
        if is_total:
            after = self.retry.deadline if self.retry is not None else None
            error: ResilienceTimeout = TotalTimeout(self.name, after or 0.0, attempt)
        else:
            error = AttemptTimeout(self.name, self.timeout or 0.0, attempt)
        if self._emit_timeout is not None:
            self._emit_timeout(
                TimedOut(
                    policy=self.name,
                    target=self.target,
                    attempt=attempt,
                    scope="total" if is_total else "attempt",
                    after=error.after,
                )
            )
        return error

    def _next_delay(
        self, error: Exception, attempt: int, start: float, previous: float, idempotent: bool
    ) -> float:
        """The sleep before the next attempt, or raise the error the call ends with."""
        plan = self.retry
        if isinstance(error, TotalTimeout):
            self._gave_up(attempt, "total_timeout", "timeout", error)
            raise error
        if plan is None or isinstance(error, ServiceCooldown):
            self._gave_up(attempt, self._unretried(error), None, error)
            raise error
        decision = decide(
            plan,
            attempt=attempt,
            error=error,
            elapsed=self._now() - start,
            previous_delay=previous,
            rng=self._rng,
            idempotent=idempotent,
        )
        if isinstance(decision, GiveUp):
            self._gave_up(attempt, decision.reason, decision.cause, error)
            if decision.reason == "not_retryable":
                raise error
            raise RetriesExhausted(plan.name, attempt, decision.reason, error) from error
        if self.budget is not None and not self.budget.try_spend():
            if self._emit_budget is not None:
                self._emit_budget(
                    BudgetExhausted(
                        policy=self.name, target=self.target, attempt=attempt, cause=decision.cause
                    )
                )
            self._gave_up(attempt, "budget", decision.cause, error)
            raise RetryBudgetExhausted(plan.name, attempt, "budget", error) from error
        if self._emit_retry is not None:
            self._emit_retry(
                RetryScheduled(
                    policy=self.name,
                    target=self.target,
                    attempt=attempt,
                    delay=decision.delay,
                    cause=decision.cause,
                    error=describe(error),
                    retry_after=decision.retry_after,
                )
            )
        return decision.delay

    def _unretried(self, error: Exception) -> GiveUpReason:
        """Why ``error`` ends a call with no retry policy (or one that must not retry)."""
        if isinstance(error, ServiceCooldown):
            return "cooldown"
        return "attempts" if self._classifier.transient(error) else "not_retryable"

    def _gave_up(
        self, attempts: int, reason: GiveUpReason, cause: str | None, error: BaseException
    ) -> None:
        if self._emit_gave_up is not None:
            self._emit_gave_up(
                GaveUp(
                    policy=self.name,
                    target=self.target,
                    attempts=attempts,
                    reason=reason,
                    cause=cause,
                    error=describe(error),
                )
            )

    def _limit(self, start: float) -> tuple[float | None, bool]:
        """This attempt's timeout and whether it is the total deadline's (not its own)."""
        deadline = self.retry.deadline if self.retry is not None else None
        if deadline is None:
            return self.timeout, False
        left = max(0.0, deadline - (self._now() - start))
        if self.timeout is not None and self.timeout <= left:
            return self.timeout, False
        return left, True

    def _succeeded(
        self, result: Any, key: Hashable, permit: int, began: float, attempts: int
    ) -> None:
        if self.breaker is not None:
            self.breaker.record_result(permit, began, key, result)
        if self._emit_success is not None:
            self._emit_success(
                CallSucceeded(policy=self.name, target=self.target, attempts=attempts)
            )

    def _reject(self, key: Hashable, attempt: int, last: BaseException | None) -> Any:
        """The breaker refused attempt ``attempt``: serve the fallback or fail fast."""
        breaker = self.breaker
        assert breaker is not None
        state, retry_in = breaker.state, breaker.retry_in()
        if self._emit_rejected is not None:
            self._emit_rejected(
                CallRejected(
                    policy=self.name,
                    target=self.target,
                    breaker=breaker.name,
                    state=state,
                    retry_in=retry_in,
                )
            )
        policy = breaker.policy
        if policy.fallback == "static":
            self._served("static", None)
            return policy.fallback_value
        if breaker.cache is not None:
            found = breaker.cache.lookup(key)
            if isinstance(found, Cached):
                self._served("cache", found.age)
                return found.value
            if self._emit_missed is not None:
                self._emit_missed(
                    FallbackMissed(policy=self.name, target=self.target, reason=found)
                )
        raise BreakerOpen(breaker.name or self.name, state.value, retry_in) from last

    def _served(self, kind: Any, age: float | None) -> None:
        if self._emit_served is not None:
            self._emit_served(
                FallbackServed(policy=self.name, target=self.target, kind=kind, age=age)
            )

    def cache_age(self, key: Hashable = None) -> float | None:
        """Age in seconds of the cached fallback value for ``key`` (None: nothing cached)."""
        cache = self.breaker.cache if self.breaker is not None else None
        return None if cache is None else cache.age(key)


async def _attempt(awaitable: Awaitable[T], limit: float | None) -> T:
    if limit is None:
        return await awaitable
    if type(awaitable) is _Coroutine:
        try:
            pending = awaitable.send(None)
        except StopIteration as done:
            result: T = done.value
            return result
        return await finish_within(awaitable, pending, limit)
    return await within(awaitable, limit)


async def _discard(status: RetryableStatus) -> None:
    """Close a response we will not hand back, so its connection returns to the pool."""
    close = getattr(status.response, "aclose", None)
    if close is not None:
        await close()


_AUTO: Any = object()


def guard_for(
    *,
    name: str = "",
    target: str = "",
    retry: RetryPolicy | RetryPlan | None = None,
    breaker: Breaker | BreakerPolicy | None = None,
    timeout: float | None = None,
    budget: RetryBudget | None = _AUTO,
    sinks: Iterable[Sink] | Dispatch = (),
    clock: Clock = SYSTEM_CLOCK,
    rng: random.Random | None = None,
) -> Guard:
    """A standalone guard (the registry builds shared ones from :class:`Policies`).

    ``budget`` defaults to a private budget from ``retry.budget``; pass a shared
    :class:`RetryBudget` to share it, or None for no budget.
    """
    dispatch = sinks if isinstance(sinks, Dispatch) else Dispatch(sinks)
    plan = retry
    if isinstance(retry, RetryPolicy):
        plan = RetryPlan.from_policy(name, retry)
        if budget is _AUTO:
            budget = RetryBudget(retry.budget, name=name, clock=clock) if retry.budget else None
    if budget is _AUTO:
        budget = None
    if isinstance(breaker, BreakerPolicy):
        breaker = Breaker(
            breaker,
            name=name,
            target=target,
            clock=clock,
            emit=dispatch.emitter(BreakerStateChanged),
        )
    return Guard(
        name=name,
        target=target,
        retry=cast(RetryPlan | None, plan),
        breaker=breaker,
        budget=budget,
        timeout=timeout,
        dispatch=dispatch,
        clock=clock,
        rng=rng,
    )
