"""The ``outcome`` label of one task attempt, for the task duration histogram.

Light on imports on purpose: the executor calls :func:`task_outcome` for every attempt, and
the metrics (:mod:`gladd.observe.metrics`) label their histogram with it.
"""

from __future__ import annotations

from gladd.errors import TaskTimeout
from gladd.store.base import Cancelled, Failed, Outcome, Released, Succeeded

TASK_OUTCOMES = ("succeeded", "failed", "dead", "timeout", "released", "cancelled")


def task_outcome(outcome: Outcome, error: BaseException | None = None) -> str:
    """succeeded; failed (to be retried); dead (no retry left); timeout (the attempt hit the
    task timeout); released (snoozed, stopped by shutdown or postponed by a breaker);
    cancelled (by an operator)."""
    if isinstance(outcome, Succeeded):
        return "succeeded"
    if isinstance(outcome, Failed):
        if isinstance(error, TaskTimeout):
            return "timeout"
        return "dead" if outcome.retry_at is None else "failed"
    if isinstance(outcome, Released):
        return "released"
    if isinstance(outcome, Cancelled):
        return "cancelled"
    raise TypeError(f"not a task outcome: {outcome!r}")
