"""The retry decision: after a failed attempt, retry after some delay, or give up (pure).

:func:`decide` needs no event loop and no clock: the guard passes the elapsed time and an
RNG, then acts on the returned :class:`Retry` or :class:`GiveUp`. The shared retry budget
is consulted by the guard only once this says "retry", so a refused retry costs nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gladd.policies.model import RetryPolicy
from gladd.resilience.backoff import Backoff
from gladd.resilience.classify import Classifier, RetryableStatus
from gladd.resilience.events import GiveUpReason
from gladd.resilience.retry_after import parse_retry_after


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPlan:
    """A retry policy precomputed for the hot path."""

    name: str
    attempts: int
    backoff: Backoff
    deadline: float | None
    classifier: Classifier
    retry_after_cap: float
    idempotent_only: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(
                f"attempts counts the first call, so must be ≥ 1 (got {self.attempts})"
            )
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError(f"deadline must be longer than 0s (got {self.deadline})")

    @classmethod
    def from_policy(cls, name: str, policy: RetryPolicy) -> RetryPlan:
        return cls(
            name=name,
            attempts=policy.attempts,
            backoff=Backoff(
                kind=policy.backoff,
                base=policy.base_delay,
                max=policy.max_delay,
                multiplier=policy.multiplier,
                jitter=policy.jitter,
            ),
            deadline=policy.deadline,
            classifier=Classifier.of(policy.on, policy.exceptions),
            retry_after_cap=policy.retry_after_cap,
            idempotent_only=policy.idempotent_only,
        )


@dataclass(frozen=True, slots=True)
class Retry:
    """Sleep ``delay`` seconds, then try again; ``cause`` is the retry class of the error."""

    delay: float
    cause: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: the call fails with the last error (wrapped unless ``not_retryable``)."""

    reason: GiveUpReason
    cause: str | None = None


def retry_after_of(error: BaseException) -> float | None:
    """The server's Retry-After carried by ``error`` (a 429/503 response), if any."""
    if isinstance(error, RetryableStatus):
        return error.retry_after
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None or not hasattr(headers, "get"):
        return None
    value = headers.get("retry-after")
    return parse_retry_after(value) if isinstance(value, str) else None


def decide(
    plan: RetryPlan,
    *,
    attempt: int,
    error: BaseException,
    elapsed: float,
    previous_delay: float,
    rng: random.Random,
    idempotent: bool = True,
) -> Retry | GiveUp:
    """What to do after attempt number ``attempt`` failed with ``error``.

    ``elapsed`` is the time since the call began (attempts and sleeps); the next sleep
    must end before the deadline, or there is no point sleeping.
    """
    cause = plan.classifier.cause(error)
    if cause is None:
        return GiveUp("not_retryable")
    # A refused connection never reached the server, so even a POST may be repeated.
    if not idempotent and plan.idempotent_only and cause != "connect":
        return GiveUp("non_idempotent", cause)
    if attempt >= plan.attempts:
        return GiveUp("attempts", cause)
    retry_after = retry_after_of(error)
    if retry_after is not None and retry_after > plan.retry_after_cap:
        return GiveUp("retry_after", cause)
    if retry_after is not None:
        delay = retry_after
    else:
        delay = plan.backoff.delay(attempt, previous_delay, rng)
    if plan.deadline is not None and elapsed + delay >= plan.deadline:
        return GiveUp("deadline", cause)
    return Retry(delay, cause, retry_after)
