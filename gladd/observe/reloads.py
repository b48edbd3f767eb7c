"""The record of policy reloads, read by health checks, metrics and ``gladd status``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ReloadOutcome = Literal["applied", "rejected", "unchanged"]
"""applied: a new generation is served; rejected: the old one stays (invalid file, a
restart-only change); unchanged: the file's content was the same."""

PUT_BACK = "the file is the served generation again; the last rejection no longer stands"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reload:
    """One reload attempt. ``trigger``: ``start``, ``file``, ``sighup`` or ``api``."""

    trigger: str
    outcome: ReloadOutcome
    generation: int  # the generation served after it
    at: float  # Unix time
    detail: str = ""  # why it was rejected, or what changed


class ReloadReport(Protocol):
    """What :meth:`Reloads.heard` reads of a reload result (``gladd.reload.ReloadResult``)."""

    @property
    def trigger(self) -> str: ...
    @property
    def outcome(self) -> ReloadOutcome: ...
    @property
    def generation(self) -> int: ...
    @property
    def errors(self) -> Sequence[str]: ...
    @property
    def resolved(self) -> bool: ...
    @property
    def is_check(self) -> bool: ...


class Reloads:
    """Every reload's outcome, counted; the last that did something (applied, rejected, or
    the file put back to the served one, which ends a rejection: the file watcher's
    periodic "unchanged" would drown them) and the last applied kept.

    The watcher's looks that find nothing new (a touch, the check every 5 s) are not what
    an operator calls a reload: they are counted apart, in ``checks``."""

    __slots__ = ("checks", "counts", "last", "last_success")

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        """By (trigger, outcome)."""
        self.checks: Counter[str] = Counter()
        """The watcher's looks that found nothing new, by trigger (``file``, ``poll``)."""
        self.last: Reload | None = None
        self.last_success: Reload | None = None

    def record(
        self,
        trigger: str,
        outcome: ReloadOutcome,
        *,
        generation: int,
        at: float,
        detail: str = "",
        resolved: bool = False,
    ) -> Reload:
        """``resolved``: an unchanged outcome that ended a standing rejection."""
        reload = Reload(
            trigger=trigger, outcome=outcome, generation=generation, at=at, detail=detail
        )
        self.counts[trigger, outcome] += 1
        if outcome != "unchanged" or resolved or self.last is None:
            self.last = reload
        if outcome == "applied":
            self.last_success = reload
        return reload

    def heard(self, result: ReloadReport) -> None:
        """A reloader listener: ``Reloader(listeners=[..., reloads.heard])``."""
        if result.is_check:
            self.checks[result.trigger] += 1
            return
        self.record(
            result.trigger,
            result.outcome,
            generation=result.generation,
            at=time.time(),
            detail=PUT_BACK if result.resolved else "; ".join(result.errors),
            resolved=result.resolved,
        )
