"""Flow control as a claim applies it: gates (concurrency and rate limits), and pauses.

A :class:`Gate` is one limit compiled from ``policies.toml`` (a kind's own ``concurrency``
/ ``rate``, or a ``[limits.NAME]`` shared by several kinds): at most ``concurrency`` tasks
of its kinds running at once, and at most ``rate`` starts per second with a token bucket of
``burst``, each per value of the payload field ``partition`` when it has one. A task may
start only when every gate covering its kind has room; :func:`plan_claim` decides that,
purely, for every store alike. The store supplies what it read under the gates' locks.

A :class:`Pause` is an operator's brake (or a service's cooldown) stored in the store, so
that every node sees it. Targets are ``kind:NAME``, ``service:NAME``, ``limit:NAME`` and
``cooldown:SERVICE``; which kinds a target stops is the executor's business, not the
store's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

NO_PARTITION = ""
"""The partition of a gate without ``partition``, and of a task whose payload lacks the
field (or has it null): all such tasks share one allowance."""

GATED_SCAN = 500
"""How many due pending tasks of gated kinds one gated claim looks at, in claim order.
Tasks further back wait for the next claim (documented head-of-line bound)."""

PauseTargetKind = str
"""``kind``, ``service``, ``limit`` or ``cooldown`` — the part of a target before ``:``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Gate:
    """One limit, as a claim applies it."""

    name: str  # "kind:crm.sync" or "limit:crm": its lock row and token-bucket key
    kinds: tuple[str, ...]  # the kinds it covers, sorted; their running tasks count
    concurrency: int | None = None  # at most this many running at once (per partition)
    rate: float | None = None  # at most this many starts per second (per partition)
    burst: int = 1  # the token bucket's size: starts allowed at once beyond the rate
    partition: str | None = None  # payload field whose value splits the allowance


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A due pending task a gated claim may take, in claim order."""

    id: int
    kind: str
    parts: Mapping[str, str] = field(default_factory=dict)  # partition field → its value


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    """A token bucket as stored: ``tokens`` left at ``at``. A bucket never stored is full."""

    tokens: float
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class GateUsage:
    """One gate after a claim (or as :meth:`Store.limit_usage` read it)."""

    running: int  # tasks of its kinds running, over every partition
    busiest: int  # running in its fullest partition (== running when unpartitioned)
    tokens: float | None  # unpartitioned rate gate: tokens left; None otherwise
    held: int = 0  # candidates this claim held back because of this gate


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimPlan:
    """What :func:`plan_claim` decided."""

    take: tuple[int, ...]  # ids to start, in claim order
    buckets: dict[tuple[str, str], Bucket]  # (gate, partition) → bucket to store
    usage: dict[str, GateUsage]  # per gate name, counting what ``take`` adds
    held: int  # candidates not taken because a gate was full
    next_at: datetime | None  # earliest time a rate-held candidate gets a token


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitUsage:
    """The gates as the store has them now (for ``tasks show``, metrics and health)."""

    running: dict[tuple[str, str], int]  # (gate, partition) → running tasks of its kinds
    tokens: dict[tuple[str, str], float]  # (gate, partition) → tokens now, refilled to now


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    """A brake stored in the store: claims of the kinds ``target`` covers stop until
    ``until`` (None: until resumed)."""

    target: str  # "kind:NAME", "service:NAME", "limit:NAME" or "cooldown:SERVICE"
    reason: str
    until: datetime | None
    by: str  # who set it: "cli:USER@HOST", "api:ADDRESS", "cooldown:NODE"
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.until is None or self.until > now


def fields_of(gates: Sequence[Gate]) -> tuple[str, ...]:
    """The payload fields the gates partition by, sorted: what a store extracts."""
    return tuple(sorted({g.partition for g in gates if g.partition}))


def kinds_of(gates: Sequence[Gate]) -> tuple[str, ...]:
    """Every kind some gate covers, sorted."""
    return tuple(sorted({k for g in gates for k in g.kinds}))


def count_running(
    gates: Sequence[Gate], running: Iterable[Candidate]
) -> dict[tuple[str, str], int]:
    """(gate, partition) → running tasks, from the running tasks of the gates' kinds."""
    raise NotImplementedError


def refill(gate: Gate, bucket: Bucket | None, now: datetime) -> float:
    """Tokens in ``gate``'s bucket at ``now``: full when never stored; refilled at
    ``gate.rate`` per second since ``bucket.at`` (never negative time), capped at burst."""
    raise NotImplementedError


def plan_claim(
    gates: Sequence[Gate],
    candidates: Sequence[Candidate],
    *,
    running: Mapping[tuple[str, str], int],
    buckets: Mapping[tuple[str, str], Bucket],
    limit: int,
    now: datetime,
) -> ClaimPlan:
    """Which candidates to start: in order, each whose every gate has a free slot and a
    token, until ``limit`` are taken; a held candidate spends nothing and blocks no other."""
    raise NotImplementedError
