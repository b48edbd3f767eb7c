"""The states of a circuit breaker."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    """Where a breaker stands; only ``closed`` and ``half_open`` let calls through."""

    CLOSED = "closed"  # calls flow; failures are counted
    OPEN = "open"  # calls fail fast until the open duration has passed
    HALF_OPEN = "half_open"  # a few probe calls decide between closed and open again
    ISOLATED = "isolated"  # held open by an operator until a manual reset


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconfigureResult:
    """What a live reconfiguration did to a breaker's or budget's state."""

    name: str
    kept_state: bool
    """False when the change was incompatible and the state was reset."""
    changed: tuple[str, ...] = ()
    """The policy fields that changed."""
    reason: str = ""
