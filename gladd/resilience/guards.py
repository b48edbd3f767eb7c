"""The guard registry: guards, breakers and budgets built from :class:`Policies`, reloadable live.

- One :class:`RetryBudget` per retry policy name, shared by every guard using the policy,
  so a fleet of callers cannot retry-storm a sick service.
- One :class:`Breaker` per (breaker policy name, target): two services sharing a breaker
  *policy* do not share a circuit, so one sick service cannot cut off the other.
- One :class:`Guard` per target (a service, a task kind, the database), cached: a guard
  handed out before a reload keeps working and sees the new rules after :meth:`apply`.
- One :class:`Outbound` per service (its bulkhead, rate and cooldown flag), reconfigured
  in place on a reload so requests in flight keep their slots; and one :class:`Cooldowns`
  for the node, :attr:`Resilience.cooldowns`.

:meth:`Resilience.prepare` builds what new policies need beside the live objects (what can
fail fails there, changing nothing); its plan's ``commit`` hands compatible changes to the
live objects (their state is kept) and reports incompatible ones (a breaker's mode change
resets it), logging each. :meth:`Resilience.apply` does both at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from loguru import logger

from gladd.policies.model import BreakerPolicy, BudgetPolicy, Policies, ServiceBinding
from gladd.policies.task_rules import task_rules
from gladd.resilience.breaker import Breaker
from gladd.resilience.budget import RetryBudget
from gladd.resilience.clock import SYSTEM_CLOCK, Clock
from gladd.resilience.cooldown import Cooldowns, utc_now
from gladd.resilience.events import BreakerStateChanged, Dispatch, Sink
from gladd.resilience.guard import Guard
from gladd.resilience.outbound import Outbound
from gladd.resilience.retry import RetryPlan
from gladd.resilience.state import BreakerState, ReconfigureResult
from gladd.resilience.transport import ResilientTransport

GuardKey = tuple[str, str]
"""("service", name), ("task", kind) or ("database", "")."""


def breaker_id(name: str, target: str) -> str:
    """The name an operator gives a breaker: ``POLICY:TARGET`` (its policy, and the service
    or task kind it guards), as ``GET /breakers`` lists it."""
    return f"{name}:{target}"


def task_breaker_id(policies: Policies, kind: str) -> str | None:
    """The :func:`breaker_id` of the breaker that postpones task ``kind`` while open (see
    :meth:`Resilience.task_breaker`), or None when none does."""
    rules = task_rules(policies, kind)
    if rules.breaker is not None:
        return breaker_id(rules.breaker, kind) if rules.breaker in policies.breaker else None
    if rules.service is None:
        return None
    name = policies.services.get(rules.service, ServiceBinding()).breaker
    return breaker_id(name, rules.service) if name in policies.breaker else None


class UnknownBreaker(LookupError):
    """No breaker goes by the name; ``known`` are the names that do."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "none: no service or task declares a breaker"
        super().__init__(f"no breaker {name!r}; the breakers are: {listed}")
        self.name = name
        self.known = known


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spec:
    target: str
    retry: str | None
    breaker: str | None
    timeout: float | None

    @property
    def name(self) -> str:
        return self.retry or self.breaker or self.target


class Resilience:
    """Every guard of the daemon, keyed by what it guards."""

    def __init__(
        self,
        policies: Policies,
        *,
        sinks: Iterable[Sink] = (),
        clock: Clock = SYSTEM_CLOCK,
        seed: int | None = None,
        now: Callable[[], datetime] = utc_now,
        cooldowns: Cooldowns | None = None,
    ) -> None:
        """``now`` is the wall clock cooldowns are measured on (unless ``cooldowns`` is
        given, with its own)."""
        self.policies = policies
        self.dispatch = Dispatch(sinks)
        self.cooldowns = cooldowns if cooldowns is not None else Cooldowns(now=now)
        self._outbound: dict[str, Outbound] = {}
        self._clock = clock
        self._rng = random.Random(seed)
        self._budgets: dict[str, RetryBudget] = {}
        self._breakers: dict[tuple[str, str], Breaker] = {}
        self._guards: dict[GuardKey, Guard] = {}
        self._isolated: dict[str, str] = {}
        """The breakers (by :func:`breaker_id`) an operator holds isolated, and why: those
        not built yet are isolated as they are built."""

    # -- lookup ---------------------------------------------------------------------------

    def service(self, name: str) -> Guard:
        """The guard of calls to service ``name`` (defaults if it is not declared)."""
        return self._guard(("service", name))

    def task(self, kind: str) -> Guard:
        """The guard of one attempt of task ``kind`` (executor defaults if not declared)."""
        return self._guard(("task", kind))

    def database(self) -> Guard:
        """The guard of gladd's own store queries."""
        return self._guard(("database", ""))

    def transport(
        self, service: str, inner: httpx.AsyncBaseTransport | None = None
    ) -> ResilientTransport:
        """An httpx transport applying service ``service``'s guard and flow control (its
        :meth:`outbound`) to every request."""
        binding = self.policies.services.get(service, ServiceBinding())
        return ResilientTransport(
            self.service(service),
            inner,
            retry_non_idempotent=binding.retry_non_idempotent,
            outbound=self.outbound(service),
        )

    def outbound(self, service: str) -> Outbound:
        """Service ``service``'s bulkhead, rate and cooldown on this node (one per service,
        shared by every client of it, kept across reloads)."""
        found = self._outbound.get(service)
        if found is None:
            found = self._outbound[service] = self._new_outbound(self.policies, service)
        return found

    def outbounds(self) -> dict[str, Outbound]:
        """Every service's flow control built so far, by service."""
        return dict(self._outbound)

    def _new_outbound(self, policies: Policies, service: str) -> Outbound:
        return Outbound(
            service,
            policies.services.get(service, ServiceBinding()),
            cooldowns=self.cooldowns,
            clock=self._clock,
            dispatch=self.dispatch,
        )

    def task_breaker(self, kind: str) -> Breaker | None:
        """The breaker that postpones task ``kind`` while open: its own ``breaker``, or the
        breaker of the ``service`` it names (the very one the service's HTTP calls trip)."""
        rules = task_rules(self.policies, kind)
        if rules.breaker is not None:
            return self._breaker(
                _Spec(target=kind, retry=None, breaker=rules.breaker, timeout=None)
            )
        if rules.service is not None:
            service = self.policies.services.get(rules.service, ServiceBinding())
            spec = _Spec(target=rules.service, retry=None, breaker=service.breaker, timeout=None)
            return self._breaker(spec)
        return None

    def breakers(self) -> dict[tuple[str, str], Breaker]:
        """Every breaker built so far, by (breaker policy name, target)."""
        return dict(self._breakers)

    def known_breakers(self) -> dict[str, Breaker]:
        """Every breaker by :func:`breaker_id`: those built so far, and those of the
        services and task kinds declared with a breaker (built now, closed, so an operator
        can isolate one before its first call)."""
        for name, binding in sorted(self.policies.services.items()):
            if binding.breaker is not None:
                self.service(name)
        for kind, task in sorted(self.policies.tasks.items()):
            if task.breaker is not None:
                self.task_breaker(kind)
        return {breaker_id(n, t): b for (n, t), b in sorted(self._breakers.items())}

    def find_breaker(self, name: str) -> tuple[str, Breaker]:
        """The breaker ``name`` names: its :func:`breaker_id`, or the service (task kind)
        it guards when only one breaker guards it; :class:`UnknownBreaker` otherwise."""
        known = self.known_breakers()
        found = known.get(name)
        if found is not None:
            return name, found
        by_target = [(i, b) for i, b in known.items() if b.target == name]
        if len(by_target) == 1:
            return by_target[0]
        raise UnknownBreaker(name, list(known))

    def isolated(self) -> frozenset[str]:
        """The breakers an operator holds isolated, by :func:`breaker_id`."""
        return frozenset(self._isolated)

    def isolate_breaker(self, ident: str, reason: str = "isolated by operator") -> None:
        """Hold breaker ``ident`` isolated until :meth:`reset_breaker` (built or not)."""
        self._isolated[ident] = reason
        breaker = self.known_breakers().get(ident)
        if breaker is not None and breaker.state is not BreakerState.ISOLATED:
            breaker.isolate(reason)

    def reset_breaker(self, ident: str, reason: str = "reset by operator") -> None:
        """Close breaker ``ident`` and forget its failures; it is no longer isolated."""
        self._isolated.pop(ident, None)
        breaker = self.known_breakers().get(ident)
        if breaker is not None:
            breaker.reset(reason)

    def sync_isolated(self, isolated: Mapping[str, str]) -> None:
        """Make the isolated breakers exactly those of ``isolated`` (name → who asked), what
        the store says every node holds: isolate the new ones, reset those no longer there."""
        for ident in sorted(self._isolated.keys() - isolated.keys()):
            logger.warning("breaker {} reset on another node", ident)
            self.reset_breaker(ident, "reset by operator (on another node)")
        for ident in sorted(isolated.keys() - self._isolated.keys()):
            logger.warning("breaker {} isolated by {}", ident, isolated[ident])
            self.isolate_breaker(ident, f"isolated by operator {isolated[ident]}")

    def budgets(self) -> dict[str, RetryBudget]:
        return dict(self._budgets)

    # -- building -------------------------------------------------------------------------

    def _guard(self, key: GuardKey) -> Guard:
        guard = self._guards.get(key)
        if guard is None:
            guard = self._guards[key] = self._new_guard(
                self.policies, key, self._budgets, self._breakers
            )
        return guard

    def _new_guard(
        self,
        policies: Policies,
        key: GuardKey,
        budgets: dict[str, RetryBudget],
        breakers: dict[tuple[str, str], Breaker],
    ) -> Guard:
        spec = _spec_of(policies, key)
        return Guard(
            name=spec.name,
            target=spec.target,
            breaker=self._breaker_in(policies, spec, breakers),
            clock=self._clock,
            rng=random.Random(self._rng.random()),
            retry=_plan_of(policies, spec),
            budget=self._budget_in(policies, spec.retry, budgets),
            timeout=spec.timeout,
            dispatch=self.dispatch,
        )

    def _breaker(self, spec: _Spec) -> Breaker | None:
        return self._breaker_in(self.policies, spec, self._breakers)

    def _budget_in(
        self, policies: Policies, name: str | None, budgets: dict[str, RetryBudget]
    ) -> RetryBudget | None:
        policy = policies.retry.get(name) if name else None
        if name is None or policy is None or policy.budget is None:
            return None
        budget = budgets.get(name)
        if budget is None:
            budget = budgets[name] = RetryBudget(policy.budget, name=name, clock=self._clock)
        return budget

    def _breaker_in(
        self, policies: Policies, spec: _Spec, breakers: dict[tuple[str, str], Breaker]
    ) -> Breaker | None:
        policy = policies.breaker.get(spec.breaker) if spec.breaker else None
        if spec.breaker is None or policy is None:
            return None
        key = (spec.breaker, spec.target)
        breaker = breakers.get(key)
        if breaker is None:
            breaker = breakers[key] = Breaker(
                policy,
                name=spec.breaker,
                target=spec.target,
                clock=self._clock,
                emit=self.dispatch.emitter(BreakerStateChanged),
            )
            reason = self._isolated.get(breaker_id(spec.breaker, spec.target))
            if reason is not None:
                breaker.isolate(reason)
        return breaker

    # -- live reload ----------------------------------------------------------------------

    def prepare(self, policies: Policies) -> ResiliencePlan:
        """Everything ``policies`` need, built beside the live objects without touching
        them: what can fail (a retry plan, a timeout, a new breaker) fails here. The plan's
        :meth:`~ResiliencePlan.commit` takes it live.

        Budgets and breakers whose policy still exists will be reconfigured in place (their
        state is kept); the rest are dropped and, if referenced again, built fresh.
        """
        budgets: dict[str, RetryBudget] = {}
        budget_changes: list[tuple[RetryBudget, BudgetPolicy]] = []
        for name, budget in self._budgets.items():
            retry = policies.retry.get(name)
            if retry is None or retry.budget is None:
                continue
            budgets[name] = budget
            if retry.budget != budget.policy:
                budget_changes.append((budget, retry.budget))
        breakers: dict[tuple[str, str], Breaker] = {}
        breaker_changes: list[tuple[Breaker, BreakerPolicy]] = []
        for (name, target), breaker in self._breakers.items():
            policy = policies.breaker.get(name)
            if policy is None:
                continue
            breakers[name, target] = breaker
            if policy != breaker.policy:
                breaker_changes.append((breaker, policy))
        configs: dict[GuardKey, _GuardConfig] = {}
        for key in self._guards:
            spec = _spec_of(policies, key)
            if spec.timeout is not None and spec.timeout <= 0:
                raise ValueError(f"{key[0]} {key[1]!r}: timeout must be longer than 0s")
            configs[key] = _GuardConfig(
                name=spec.name,
                breaker=self._breaker_in(policies, spec, breakers),
                retry=_plan_of(policies, spec),
                budget=self._budget_in(policies, spec.retry, budgets),
                timeout=spec.timeout,
            )
        return ResiliencePlan(
            owner=self,
            policies=policies,
            budgets=budgets,
            breakers=breakers,
            budget_changes=budget_changes,
            breaker_changes=breaker_changes,
            configs=configs,
        )

    def apply(self, policies: Policies) -> list[ReconfigureResult]:
        """Take ``policies`` live at once: :meth:`prepare`, then commit."""
        return self.prepare(policies).commit()


@dataclass(frozen=True, slots=True, kw_only=True)
class _GuardConfig:
    name: str
    breaker: Breaker | None
    retry: RetryPlan | None
    budget: RetryBudget | None
    timeout: float | None


@dataclass(slots=True, kw_only=True)
class ResiliencePlan:
    """New policies prepared for a :class:`Resilience`; nothing live has changed yet."""

    owner: Resilience
    policies: Policies
    budgets: dict[str, RetryBudget]
    breakers: dict[tuple[str, str], Breaker]
    budget_changes: list[tuple[RetryBudget, BudgetPolicy]]
    breaker_changes: list[tuple[Breaker, BreakerPolicy]]
    configs: dict[GuardKey, _GuardConfig]
    new_guards: dict[GuardKey, Guard] = field(default_factory=dict)
    new_outbounds: dict[str, Outbound] = field(default_factory=dict)

    def service(self, name: str) -> Guard:
        """The guard service ``name``'s calls will have once committed: the live one (it
        gets the new rules at the commit) or one built for the new policies."""
        key: GuardKey = ("service", name)
        guard = self.owner._guards.get(key)
        if guard is None:
            guard = self.new_guards.get(key)
        if guard is None:
            guard = self.new_guards[key] = self.owner._new_guard(
                self.policies, key, self.budgets, self.breakers
            )
        return guard

    def outbound(self, service: str) -> Outbound:
        """Service ``service``'s flow control once committed: the live one (reconfigured
        at the commit) or one built for the new policies."""
        found = self.owner._outbound.get(service) or self.new_outbounds.get(service)
        if found is None:
            found = self.new_outbounds[service] = self.owner._new_outbound(self.policies, service)
        return found

    def transport(
        self, service: str, inner: httpx.AsyncBaseTransport | None = None
    ) -> ResilientTransport:
        """Like :meth:`Resilience.transport`, under the prepared policies."""
        binding = self.policies.services.get(service, ServiceBinding())
        return ResilientTransport(
            self.service(service),
            inner,
            retry_non_idempotent=binding.retry_non_idempotent,
            outbound=self.outbound(service),
        )

    def commit(self) -> list[ReconfigureResult]:
        """Take the plan live (assignments and in-place reconfigurations only: what could
        fail was done in :meth:`Resilience.prepare`); what each breaker and budget kept."""
        owner = self.owner
        owner.policies = self.policies
        owner._budgets = self.budgets
        owner._breakers = self.breakers
        results = [budget.reconfigure(policy) for budget, policy in self.budget_changes]
        results += [breaker.reconfigure(policy) for breaker, policy in self.breaker_changes]
        for key, config in self.configs.items():
            guard = owner._guards[key]
            guard.name = config.name
            guard.breaker = config.breaker
            guard.configure(
                retry=config.retry,
                budget=config.budget,
                timeout=config.timeout,
                dispatch=owner.dispatch,
            )
        owner._guards.update(self.new_guards)
        for service, outbound in owner._outbound.items():
            outbound.configure(
                self.policies.services.get(service, ServiceBinding()), owner.dispatch
            )
        owner._outbound.update(self.new_outbounds)
        for result in results:
            if not result.kept_state:
                logger.warning("reload reset {}: {}", result.name, result.reason)
            elif result.changed:
                logger.info(
                    "reload changed {} ({}), state kept", result.name, ", ".join(result.changed)
                )
        return results


def _spec_of(p: Policies, key: GuardKey) -> _Spec:
    kind, name = key
    if kind == "service":
        s = p.services.get(name, ServiceBinding())
        return _Spec(target=name, retry=s.retry, breaker=s.breaker, timeout=s.timeout)
    if kind == "task":
        rules = task_rules(p, name)
        return _Spec(target=name, retry=rules.retry, breaker=rules.breaker, timeout=rules.timeout)
    return _Spec(
        target="database",
        retry=p.database.retry,
        breaker=None,
        timeout=p.database.query_timeout,
    )


def _plan_of(policies: Policies, spec: _Spec) -> RetryPlan | None:
    retry = policies.retry.get(spec.retry) if spec.retry else None
    return RetryPlan.from_policy(spec.retry, retry) if spec.retry and retry else None
