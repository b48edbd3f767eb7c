"""Health as components report it, in the ``application/health+json`` shape.

Components *push* their checks into one :class:`HealthBoard` from background work; the
admin API only *reads* it, so a probe never touches the database or an upstream
(draft-inadarei-api-health-check, the format Kubernetes and Consul tooling understand).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Ordered from best to worst."""

    PASS = "pass"  # working as intended
    WARN = "warn"  # working, but an operator should look (still HTTP 200)
    FAIL = "fail"  # not working (HTTP 503)


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default=Status.PASS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One measurement of one component, e.g. ``policies:generation``."""

    component: str
    measurement: str
    status: Status = Status.PASS
    observed_value: Any = None
    observed_unit: str | None = None
    output: str | None = None
    affects_readiness: bool = False
    at: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        return f"{self.component}:{self.measurement}"

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "componentId": self.component,
            "status": self.status.value,
            "time": datetime.fromtimestamp(self.at, UTC).isoformat(),
        }
        if self.observed_value is not None:
            body["observedValue"] = self.observed_value
        if self.observed_unit:
            body["observedUnit"] = self.observed_unit
        if self.output:
            body["output"] = self.output
        return body


class HealthBoard:
    """The latest check of every component; written by components, read by the API."""

    def __init__(self, *, version: str, service_id: str) -> None:
        self.version = version
        self.service_id = service_id
        self.started = False
        self.stopping = False
        self._checks: dict[str, Check] = {}

    def publish(self, check: Check) -> None:
        self._checks[check.key] = check

    def status(self) -> Status:
        return worst([c.status for c in self._checks.values()])

    def ready(self) -> tuple[bool, str]:
        """Whether this node should get work, and why not."""
        if self.stopping:
            return False, "stopping"
        if not self.started:
            return False, "starting"
        # A readiness check must pass outright: "warn" there means "not yet" (e.g. a store
        # still opening), and a node that cannot take work must not be sent any.
        failing = [
            f"{c.key} ({c.output})" if c.output else c.key
            for c in self._checks.values()
            if c.affects_readiness and c.status is not Status.PASS
        ]
        if failing:
            return False, "not ready: " + ", ".join(sorted(failing))
        return True, "ready"

    def report(self) -> dict[str, Any]:
        checks: dict[str, list[dict[str, Any]]] = {}
        for key in sorted(self._checks):
            checks[key] = [self._checks[key].as_json()]
        return {
            "status": self.status().value,
            "version": self.version,
            "serviceId": self.service_id,
            "description": "gladd resilience daemon",
            "checks": checks,
        }
