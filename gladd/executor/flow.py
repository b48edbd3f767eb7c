"""Flow control as the producer sees it: the gates the policies define, and what holds a
kind back (a pause in the policies or the store, a service's cooldown). Pure: no I/O.

A kind is *held* while a pause covers it: claims leave its tasks pending, no attempt spent.
What a pause target covers:

    kind:NAME        that kind
    limit:NAME       every kind listing the limit in ``limits``
    service:NAME     every kind bound to the service (``[tasks.K] service``) and every kind
    cooldown:NAME    of a plugin that declares it (a cooldown is a service's own pause)

A kind is *gated* while some gate covers it (:func:`gates_of`); gated kinds are claimed by
:meth:`~gladd.store.Store.claim_gated`, the others by the plain claim, so a full limit never
stands in the way of an unlimited kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gladd.durations import format_duration
from gladd.errors import UnknownPauseTarget
from gladd.executor.kinds import KindRegistry
from gladd.policies import Policies
from gladd.rates import format_rate
from gladd.store.gates import NO_PARTITION, Gate, GateUsage, LimitUsage, Pause, part_text

TARGET_KINDS = ("kind", "service", "limit", "cooldown")
"""The kinds of pause target, as the part before ``:`` names them."""


def gates_of(policies: Policies) -> tuple[Gate, ...]:
    """Every gate the policies define: a kind's own ``concurrency``/``rate``, and each
    ``[limits.NAME]`` some kind lists (one with neither is a pause group only)."""
    gates = [
        Gate(
            name=f"kind:{kind}",
            kinds=(kind,),
            concurrency=t.concurrency,
            rate=t.rate,
            burst=t.burst,
            partition=t.partition,
        )
        for kind, t in sorted(policies.tasks.items())
        if t.concurrency is not None or t.rate is not None
    ]
    for name, limit in sorted(policies.limits.items()):
        kinds = tuple(sorted(k for k, t in policies.tasks.items() if name in t.limits))
        if kinds and (limit.concurrency is not None or limit.rate is not None):
            gates.append(
                Gate(
                    name=f"limit:{name}",
                    kinds=kinds,
                    concurrency=limit.concurrency,
                    rate=limit.rate,
                    burst=limit.burst,
                    partition=limit.partition,
                )
            )
    return tuple(gates)


def split_target(target: str) -> tuple[str, str]:
    """(``kind``, name) of a pause target; a bare name is a task kind."""
    head, sep, rest = target.partition(":")
    if sep and head in TARGET_KINDS:
        return head, rest
    return "kind", target


def target_kinds(target: str, policies: Policies, kinds: KindRegistry) -> set[str]:
    """The task kinds a pause on ``target`` holds back."""
    what, name = split_target(target)
    if what == "kind":
        return {name}
    if what == "limit":
        return {k for k, t in policies.tasks.items() if name in t.limits}
    bound = {k for k, t in policies.tasks.items() if t.service == name}
    declared = {k for k in kinds.names() if name in _services(kinds, k)}
    return bound | declared


def _services(kinds: KindRegistry, kind: str) -> tuple[str, ...]:
    registered = kinds.get(kind)
    return registered.services if registered is not None else ()


def normal_target(target: str, policies: Policies, kinds: KindRegistry) -> str:
    """``target`` as stored (``kind:NAME``...), once checked to name something gladd knows;
    raises :class:`UnknownPauseTarget` saying what is known otherwise."""
    if not isinstance(target, str) or not target.strip():
        raise UnknownPauseTarget(
            "a pause names a kind, or service:NAME, limit:NAME or cooldown:SERVICE (got "
            f"{target!r})"
        )
    what, name = split_target(target.strip())
    known = {
        "kind": set(kinds.names()),
        "limit": set(policies.limits),
        "service": set(policies.services),
        "cooldown": set(policies.services),
    }[what]
    if name not in known:
        shown = name if len(name) <= 80 else name[:80] + "…"
        listed = ", ".join(sorted(known)) or "none"
        noun = {"kind": "task kind", "cooldown": "service"}.get(what, what)
        raise UnknownPauseTarget(f"no {noun} {shown!r} to pause or resume (known: {listed})")
    return f"{what}:{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """Why a kind is held back now."""

    target: str  # "kind:crm.sync", "service:crm", "cooldown:crm", "limit:crm"
    source: str  # "policies" or who set the stored pause
    reason: str
    until: datetime | None

    def describe(self) -> str:
        what = "cooldown" if self.target.startswith("cooldown:") else "paused"
        until = f" until {self.until.isoformat()}" if self.until is not None else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{what} ({self.target}, by {self.source}){until}{why}"


def policy_pauses(policies: Policies) -> list[str]:
    """The targets ``paused = true`` in the policies, in a stable order."""
    targets = [f"kind:{k}" for k, t in sorted(policies.tasks.items()) if t.paused]
    targets += [f"limit:{n}" for n, lim in sorted(policies.limits.items()) if lim.paused]
    targets += [f"service:{n}" for n, s in sorted(policies.services.items()) if s.paused]
    return targets


def in_force(policies: Policies, pauses: Iterable[Pause], now: datetime) -> list[Hold]:
    """Every pause in force: the policies' first, then the store's active ones by target."""
    reasons = [
        Hold(target=t, source="policies", reason="paused = true in the policies", until=None)
        for t in policy_pauses(policies)
    ]
    reasons += [
        Hold(target=p.target, source=p.by, reason=p.reason, until=p.until)
        for p in sorted(pauses, key=lambda p: p.target)
        if p.active(now)
    ]
    return reasons


def holds(
    policies: Policies, pauses: Iterable[Pause], kinds: KindRegistry, now: datetime
) -> dict[str, Hold]:
    """Each held kind and the first reason it is held (policies first, then the store's
    pauses in target order); expired pauses hold nothing."""
    held: dict[str, Hold] = {}
    for hold in in_force(policies, pauses, now):
        for kind in target_kinds(hold.target, policies, kinds):
            held.setdefault(kind, hold)
    return held


def next_expiry(pauses: Iterable[Pause], now: datetime) -> datetime | None:
    """When the next active, timed pause ends (a claim should look again then)."""
    ends = [p.until for p in pauses if p.until is not None and p.until > now]
    return min(ends) if ends else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """One claim's kinds: claimed plainly, claimed through the gates, and held."""

    free: tuple[str, ...]
    gated: tuple[str, ...]
    gates: tuple[Gate, ...]


def split_kinds(names: Sequence[str], gates: Sequence[Gate], held: Iterable[str]) -> Split:
    """Which of this node's kinds ``names`` go to which claim, leaving out held ones."""
    covered = {k for g in gates for k in g.kinds}
    blocked = set(held)
    free = tuple(k for k in names if k not in covered and k not in blocked)
    gated = tuple(k for k in names if k in covered and k not in blocked)
    return Split(free=free, gated=gated, gates=tuple(gates) if gated else ())


def wait_reasons(
    *,
    kind: str,
    payload: object,
    run_at: datetime,
    policies: Policies,
    held: dict[str, Hold],
    usage: LimitUsage,
    now: datetime,
) -> list[str]:
    """Why a pending task of ``kind`` is not running now, as an operator reads it: not due
    yet, its kind held back, or a gate of its kind full or out of tokens. Empty: it is due
    and free to start — it waits only for a worker's free slot."""
    reasons = []
    if run_at > now:
        reasons.append(f"not due until {run_at.isoformat()}")
    if kind in held:
        reasons.append(held[kind].describe())
    for gate in gates_of(policies):
        if kind not in gate.kinds:
            continue
        part = partition_of(gate, payload)
        where = f" for {gate.partition} = {part!r}" if gate.partition else ""
        running = usage.running.get((gate.name, part), 0)
        if gate.concurrency is not None and running >= gate.concurrency:
            reasons.append(
                f"limit {gate.name} is full{where}: {running} of {gate.concurrency} running"
            )
        tokens = usage.tokens.get((gate.name, part))
        if gate.rate is not None and tokens is not None and tokens < 1:
            wait = (1 - tokens) / gate.rate
            reasons.append(
                f"limit {gate.name} is out of start tokens{where} (rate "
                f"{format_rate(gate.rate)}): the next in {format_duration(wait)}"
            )
    return reasons


def partition_of(gate: Gate, payload: object) -> str:
    """The partition a task with ``payload`` falls in under ``gate``, as the stores
    compute it (:func:`~gladd.store.gates.part_text` of the field's value)."""
    if gate.partition is None or not isinstance(payload, dict):
        return NO_PARTITION
    return part_text(payload.get(gate.partition))


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowStatistics:
    """Flow control on this node now, for health and metrics (a snapshot)."""

    gates: tuple[Gate, ...] = ()  # the policies' gates
    usage: dict[str, GateUsage] = field(default_factory=dict)  # as the last gated claim saw
    held_tasks: int = 0  # due tasks the last gated claim held back
    held_kinds: dict[str, Hold] = field(default_factory=dict)  # kind → why it is held
    pauses: tuple[Hold, ...] = ()  # every pause in force, the policies' and the store's


def describe_gate(gate: Gate) -> str:
    """``limit kind:crm.sync: 5 running, 50/s (burst 5), per account_id → crm.sync``."""
    bounds = []
    if gate.concurrency is not None:
        bounds.append(f"{gate.concurrency} running")
    if gate.rate is not None:
        bounds.append(f"{format_rate(gate.rate)} (burst {gate.burst})")
    per = f", per {gate.partition}" if gate.partition else ""
    return f"limit {gate.name}: {', '.join(bounds)}{per} → {', '.join(gate.kinds)}"
