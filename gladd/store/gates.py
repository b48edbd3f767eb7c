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

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

NO_PARTITION = ""
"""The partition of a gate without ``partition``, and of a task whose payload lacks the
field (or has it null): all such tasks share one allowance."""

GATED_SCAN = 500
"""How many due pending tasks of gated kinds one gated claim looks at, in claim order.
Tasks further back wait for the next claim (documented head-of-line bound)."""


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
class GatedRequest:
    """A gated claim's arguments as a store's claim reads them (``now`` already UTC)."""

    worker: str
    limit: int
    now: datetime
    kinds: tuple[str, ...]
    gates: tuple[Gate, ...]
    scan: int
    ended: tuple[int, ...] = ()  # this worker's tasks whose attempts ended: not counted
    claim_id: int = 0  # PostgreSQL: the claim's id, to learn whether an unanswered commit held


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


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerOverride:
    """A breaker an operator isolated on every node sharing the store, until reset."""

    name: str  # the breaker's POLICY:TARGET
    by: str  # who asked: "ADDRESS (token)" (gladd.admin.audit.who)
    created_at: datetime
    state: str = "isolated"  # the only override there is


def fields_of(gates: Sequence[Gate]) -> tuple[str, ...]:
    """The payload fields the gates partition by, sorted: what a store extracts."""
    return tuple(sorted({g.partition for g in gates if g.partition}))


def kinds_of(gates: Sequence[Gate]) -> tuple[str, ...]:
    """Every kind some gate covers, sorted."""
    return tuple(sorted({k for g in gates for k in g.kinds}))


def part_of(gate: Gate, candidate: Candidate) -> str:
    """The partition ``candidate`` falls in under ``gate``."""
    if gate.partition is None:
        return NO_PARTITION
    return candidate.parts.get(gate.partition, NO_PARTITION)


def part_text(value: object) -> str:
    """A payload field's value as a partition, as PostgreSQL's ``payload ->> field`` and
    the SQLite store's extraction give it: missing or null is :data:`NO_PARTITION`, a
    string itself, a number or boolean its JSON text (the memory store's extraction)."""
    if value is None:
        return NO_PARTITION
    if isinstance(value, str):
        return value
    return json.dumps(value)


def narrowed(
    gates: Sequence[Gate],
    kinds: Sequence[str],
    *,
    running: Mapping[tuple[str, str], int],
    buckets: Mapping[tuple[str, str], Bucket],
    limit: int,
    scan: int,
    now: datetime,
) -> tuple[tuple[str, ...], int]:
    """The kinds worth reading candidates of, and how many to read: a kind that a full
    unpartitioned concurrency gate blocks can start nothing, so none of its tasks is read
    (a rate's are, so that ``next_at`` says when its next token comes); without
    partitioned gates no more than a few times ``limit`` are read (every candidate of a
    kind is then alike), else up to ``scan``. What :func:`plan_claim` would take from the
    full scan it takes from this one: only candidates it would hold are left unread — and
    not counted in ``held``. This keeps a gated claim cheap while its limit is full."""
    blocked = {
        kind
        for gate in gates
        if gate.partition is None
        and gate.concurrency is not None
        and running.get((gate.name, NO_PARTITION), 0) >= gate.concurrency
        for kind in gate.kinds
    }
    open_kinds = tuple(k for k in kinds if k not in blocked)
    if any(gate.partition is not None for gate in gates):
        return open_kinds, scan
    return open_kinds, min(scan, 2 * limit + 10)


def count_running(
    gates: Sequence[Gate], running: Iterable[Candidate]
) -> dict[tuple[str, str], int]:
    """(gate, partition) → running tasks, from the running tasks of the gates' kinds."""
    counts: dict[tuple[str, str], int] = {}
    covering = _covering(gates)
    for task in running:
        for gate in covering.get(task.kind, ()):
            key = (gate.name, part_of(gate, task))
            counts[key] = counts.get(key, 0) + 1
    return counts


def refill(gate: Gate, bucket: Bucket | None, now: datetime) -> float:
    """Tokens in ``gate``'s bucket at ``now``: full when never stored; refilled at
    ``gate.rate`` per second since ``bucket.at`` (never negative time), capped at burst."""
    if bucket is None:
        return float(gate.burst)
    elapsed = max(0.0, (now - bucket.at).total_seconds())
    return min(float(gate.burst), bucket.tokens + elapsed * (gate.rate or 0.0))


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
    token, until ``limit`` are taken; a held candidate spends nothing and blocks no other.

    A candidate of a kind no gate covers is taken freely. ``next_at`` is the earliest time
    one of the candidates held by rates alone (none of its gates full) has a token in every
    gate it lacked one in: when waiting, rather than a task finishing, gives room."""
    ledger = _Ledger(gates, running, buckets, now)
    covering = _covering(gates)
    take: list[int] = []
    held = 0
    waits: list[float] = []
    for candidate in candidates:
        if len(take) >= limit:
            break
        mine = [(gate, part_of(gate, candidate)) for gate in covering.get(candidate.kind, ())]
        full = [gate for gate, part in mine if not ledger.has_slot(gate, part)]
        dry = [(gate, part) for gate, part in mine if not ledger.has_token(gate, part)]
        if full or dry:
            held += 1
            for name in {gate.name for gate in full} | {gate.name for gate, _ in dry}:
                ledger.held[name] += 1
            if not full:
                waits.append(max(ledger.wait(gate, part) for gate, part in dry))
            continue
        for gate, part in mine:
            ledger.start(gate, part)
        take.append(candidate.id)
    next_at = None if not waits else _after(now, min(waits))
    return ClaimPlan(
        take=tuple(take),
        buckets=ledger.spent(),
        usage={gate.name: ledger.usage(gate) for gate in gates},
        held=held,
        next_at=next_at,
    )


TOKEN_SLACK = 1e-9
"""Tokens a bucket may lack and still give one: what float arithmetic loses refilling at
microsecond times (a rate of 3/s is 0.999999 tokens after 333,333 µs, and ``next_at`` is
rounded up to the microsecond), never a whole start."""


def _covering(gates: Sequence[Gate]) -> dict[str, list[Gate]]:
    """Kind → the gates covering it, in the gates' order."""
    covering: dict[str, list[Gate]] = {}
    for gate in gates:
        for kind in gate.kinds:
            covering.setdefault(kind, []).append(gate)
    return covering


def _after(now: datetime, seconds: float) -> datetime:
    """``now`` plus ``seconds``, rounded up to the microsecond (the stores' resolution);
    a float a millionth of a microsecond past a whole one is that one, not the next."""
    return now + timedelta(microseconds=math.ceil(seconds * 1e6 - 1e-6))


class _Ledger:
    """Slots and tokens as one plan spends them."""

    def __init__(
        self,
        gates: Sequence[Gate],
        running: Mapping[tuple[str, str], int],
        buckets: Mapping[tuple[str, str], Bucket],
        now: datetime,
    ) -> None:
        self._running = dict(running)
        self._buckets = buckets
        self._now = now
        self._tokens: dict[tuple[str, str], float] = {}
        self._spent: set[tuple[str, str]] = set()
        self.held = dict.fromkeys((gate.name for gate in gates), 0)

    def has_slot(self, gate: Gate, part: str) -> bool:
        running = self._running.get((gate.name, part), 0)
        return gate.concurrency is None or running < gate.concurrency

    def has_token(self, gate: Gate, part: str) -> bool:
        return gate.rate is None or self.tokens(gate, part) >= 1 - TOKEN_SLACK

    def tokens(self, gate: Gate, part: str) -> float:
        key = (gate.name, part)
        if key not in self._tokens:
            self._tokens[key] = refill(gate, self._buckets.get(key), self._now)
        return self._tokens[key]

    def wait(self, gate: Gate, part: str) -> float:
        """Seconds until the bucket holds a whole token (``gate`` has a rate)."""
        assert gate.rate is not None
        return max(0.0, 1 - self.tokens(gate, part)) / gate.rate

    def start(self, gate: Gate, part: str) -> None:
        key = (gate.name, part)
        self._running[key] = self._running.get(key, 0) + 1
        if gate.rate is not None:
            self._tokens[key] = max(0.0, self.tokens(gate, part) - 1)
            self._spent.add(key)

    def spent(self) -> dict[tuple[str, str], Bucket]:
        """The buckets to store: those a start took a token from, as they are at ``now`` —
        or at their stored time when that is later (another node's clock ahead of ours):
        moving it back would refill the same stretch of time twice."""
        spent = {}
        for key in sorted(self._spent):
            stored = self._buckets.get(key)
            at = self._now if stored is None else max(self._now, stored.at)
            spent[key] = Bucket(tokens=self._tokens[key], at=at)
        return spent

    def usage(self, gate: Gate) -> GateUsage:
        counts = [n for (name, _), n in self._running.items() if name == gate.name]
        tokens = None
        if gate.rate is not None and gate.partition is None:
            tokens = self.tokens(gate, NO_PARTITION)
        return GateUsage(
            running=sum(counts),
            busiest=max(counts, default=0),
            tokens=tokens,
            held=self.held[gate.name],
        )
