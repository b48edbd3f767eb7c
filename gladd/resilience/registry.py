"""The registry: guards, breakers and budgets built from :class:`Policies`, reloadable live.

- One :class:`RetryBudget` per retry policy name, shared by every guard using the policy,
  so a fleet of callers cannot retry-storm a sick service.
- One :class:`Breaker` per (breaker policy name, target): two services sharing a breaker
  *policy* do not share a circuit, so one sick service cannot cut off the other.
- One :class:`Guard` per target (a service, a task kind, the database), cached: a guard
  handed out before a reload keeps working and sees the new rules after :meth:`apply`.

:meth:`Resilience.apply` hands compatible changes to the live objects (their state is kept)
and reports incompatible ones (a breaker's mode change resets it), logging each.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from loguru import logger

from gladd.policies.model import Policies, ServiceBinding
from gladd.resilience.breaker import Breaker
from gladd.resilience.budget import RetryBudget
from gladd.resilience.clock import SYSTEM_CLOCK, Clock
from gladd.resilience.events import BreakerStateChanged, Dispatch, Sink
from gladd.resilience.guard import Guard
from gladd.resilience.retry import RetryPlan
from gladd.resilience.state import ReconfigureResult
from gladd.resilience.transport import ResilientTransport

GuardKey = tuple[str, str]
"""("service", name), ("task", kind) or ("database", "")."""


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
    ) -> None:
        self.policies = policies
        self.dispatch = Dispatch(sinks)
        self._clock = clock
        self._rng = random.Random(seed)
        self._budgets: dict[str, RetryBudget] = {}
        self._breakers: dict[tuple[str, str], Breaker] = {}
        self._guards: dict[GuardKey, Guard] = {}

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
        """An httpx transport applying service ``service``'s guard to every request."""
        binding = self.policies.services.get(service, ServiceBinding())
        return ResilientTransport(
            self.service(service), inner, retry_non_idempotent=binding.retry_non_idempotent
        )

    def task_breaker(self, kind: str) -> Breaker | None:
        """The breaker that postpones task ``kind`` while open: its own ``breaker``, or the
        breaker of the ``service`` it names (the very one the service's HTTP calls trip)."""
        binding = self.policies.tasks.get(kind)
        if binding is None:
            return None
        if binding.breaker is not None:
            return self._breaker(
                _Spec(target=kind, retry=None, breaker=binding.breaker, timeout=None)
            )
        if binding.service is not None:
            service = self.policies.services.get(binding.service, ServiceBinding())
            spec = _Spec(target=binding.service, retry=None, breaker=service.breaker, timeout=None)
            return self._breaker(spec)
        return None

    def breakers(self) -> dict[tuple[str, str], Breaker]:
        """Every breaker built so far, by (breaker policy name, target)."""
        return dict(self._breakers)

    def budgets(self) -> dict[str, RetryBudget]:
        return dict(self._budgets)

    # -- building -------------------------------------------------------------------------

    def _spec(self, key: GuardKey) -> _Spec:
        p = self.policies
        kind, name = key
        if kind == "service":
            s = p.services.get(name, ServiceBinding())
            return _Spec(target=name, retry=s.retry, breaker=s.breaker, timeout=s.timeout)
        if kind == "task":
            t = p.tasks.get(name)
            if t is None:
                return _Spec(
                    target=name,
                    retry=p.executor.retry,
                    breaker=None,
                    timeout=p.executor.task_timeout,
                )
            return _Spec(
                target=name,
                retry=t.retry or p.executor.retry,
                breaker=t.breaker,
                timeout=t.timeout if t.timeout is not None else p.executor.task_timeout,
            )
        return _Spec(
            target="database",
            retry=p.database.retry,
            breaker=None,
            timeout=p.database.query_timeout,
        )

    def _guard(self, key: GuardKey) -> Guard:
        guard = self._guards.get(key)
        if guard is None:
            spec = self._spec(key)
            guard = Guard(
                name=spec.name,
                target=spec.target,
                breaker=self._breaker(spec),
                clock=self._clock,
                rng=random.Random(self._rng.random()),
                retry=self._plan(spec),
                budget=self._budget(spec.retry),
                timeout=spec.timeout,
                dispatch=self.dispatch,
            )
            self._guards[key] = guard
        return guard

    def _plan(self, spec: _Spec) -> RetryPlan | None:
        retry = self.policies.retry.get(spec.retry) if spec.retry else None
        return RetryPlan.from_policy(spec.retry, retry) if spec.retry and retry else None

    def _budget(self, name: str | None) -> RetryBudget | None:
        policy = self.policies.retry.get(name) if name else None
        if name is None or policy is None or policy.budget is None:
            return None
        budget = self._budgets.get(name)
        if budget is None:
            budget = self._budgets[name] = RetryBudget(policy.budget, name=name, clock=self._clock)
        return budget

    def _breaker(self, spec: _Spec) -> Breaker | None:
        policy = self.policies.breaker.get(spec.breaker) if spec.breaker else None
        if spec.breaker is None or policy is None:
            return None
        key = (spec.breaker, spec.target)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = Breaker(
                policy,
                name=spec.breaker,
                target=spec.target,
                clock=self._clock,
                emit=self.dispatch.emitter(BreakerStateChanged),
            )
        return breaker

    # -- live reload ----------------------------------------------------------------------

    def apply(self, policies: Policies) -> list[ReconfigureResult]:
        """Take ``policies`` live; what each breaker and budget kept or lost, in order.

        Budgets and breakers whose policy still exists are reconfigured in place; the rest
        are dropped and, if referenced again, built fresh. Every guard handed out so far
        gets its new plan.
        """
        self.policies = policies
        results: list[ReconfigureResult] = []
        for name, budget in list(self._budgets.items()):
            retry = policies.retry.get(name)
            if retry is None or retry.budget is None:
                del self._budgets[name]
            elif retry.budget != budget.policy:
                results.append(budget.reconfigure(retry.budget))
        for (name, target), breaker in list(self._breakers.items()):
            policy = policies.breaker.get(name)
            if policy is None:
                del self._breakers[name, target]
            elif policy != breaker.policy:
                results.append(breaker.reconfigure(policy))
        for key, guard in self._guards.items():
            spec = self._spec(key)
            guard.name = spec.name
            guard.breaker = self._breaker(spec)
            guard.configure(
                retry=self._plan(spec),
                budget=self._budget(spec.retry),
                timeout=spec.timeout,
                dispatch=self.dispatch,
            )
        for result in results:
            if not result.kept_state:
                logger.warning("reload reset {}: {}", result.name, result.reason)
            elif result.changed:
                logger.info(
                    "reload changed {} ({}), state kept", result.name, ", ".join(result.changed)
                )
        return results
