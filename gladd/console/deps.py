"""What the console reads and acts on: the daemon's live objects, handed over once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gladd.admin.breakers import Persist
from gladd.executor.service import TaskService
from gladd.observe.health import HealthBoard
from gladd.observe.policy_history import PolicyHistory
from gladd.observe.throughput import ThroughputRing
from gladd.resilience.guards import Resilience


@dataclass(frozen=True, slots=True, kw_only=True)
class PoliciesFile:
    """The policies served now, as the file was read."""

    source: str
    sha256: str
    generation: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleDeps:
    """The console's view of one running node."""

    tasks: TaskService
    board: HealthBoard
    resilience: Resilience
    throughput: ThroughputRing
    policies_file: Callable[[], PoliciesFile]
    now: Callable[[], datetime]
    node: str
    store_open: Callable[[], bool] = lambda: True
    persist_breaker: Persist | None = None
    policy_history: PolicyHistory | None = None
    """The generations served since the start and the last rejection (the policies screen)."""
    token: str | None = None
    """The admin token: with one, the console has a login page."""
    read_only: bool = False
    """Hide every action (the admin address refuses them anyway)."""
