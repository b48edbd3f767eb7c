"""What health and metrics read of the executor: a frozen snapshot, taken on demand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorStatistics:
    """This node's executor since it started (``running`` is now; the rest are counts).

    ``failed`` counts every failed attempt written, ``dead`` those of them with no retry
    left; ``released`` covers snoozes, shutdown releases and breaker postponements.
    """

    running: int = 0
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    timeouts: int = 0
    released: int = 0
    cancelled: int = 0
    fenced: int = 0
    rescued: int = 0
    postponed: int = 0
    postponed_by: Mapping[str, int] = field(default_factory=dict)
    """``postponed`` by reason: ``breaker``, ``cooldown``, ``bulkhead``."""
