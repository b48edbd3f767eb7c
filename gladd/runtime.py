"""One wiring: every subsystem of a gladd node, built from settings and policies.

:class:`Runtime` constructs the resilience engine (with its counters and log sink), the
kinds registry, the plugin host, the task store, the task service, the executor, the
monitors, the health checker, the metrics and the reloader — and does no I/O while doing
so: no socket is bound, the store is not opened, no plugin is imported. The daemon runs
what it builds (:mod:`gladd.daemon`: start order, signals, stop); the tests and
:mod:`gladd.testing` build through it too, passing a memory store or fake transports, so
what they exercise is what the daemon runs.

Start-up work that does touch the outside happens in the start-up sequence, not here:
:meth:`Runtime.load_plugins` discovers and imports the plugins (and registers their kinds);
the daemon opens the store and reports it through :class:`StoreHealth`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx
from loguru import logger

from gladd import tracing
from gladd.console.deps import ConsoleDeps, PoliciesFile
from gladd.errors import PolicyError, Problem, StoreError
from gladd.executor.catalogue import kind_specs
from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.executor.registry_checks import registry_problems
from gladd.executor.runner import Executor, utcnow
from gladd.executor.service import TaskService
from gladd.observe.health import Check, HealthBoard, Status
from gladd.observe.health_checks import HealthChecker, reload_check
from gladd.observe.lag import LagMonitor
from gladd.observe.metrics import Metrics
from gladd.observe.policy_history import PolicyHistory
from gladd.observe.pool import PoolMonitor
from gladd.observe.reloads import Reloads
from gladd.observe.throughput import ThroughputRing
from gladd.observe.watched import Watched
from gladd.plugins import Plugin, PluginHost, discover_plugins
from gladd.plugins.discover import Discovery
from gladd.policies import LoadedPolicies, Policies
from gladd.reload.diff import Change
from gladd.reload.reloader import Reloader, ReloadListener, ReloadResult, Served
from gladd.resilience import Counters, LogSink, Resilience, Sink
from gladd.resilience.clock import SYSTEM_CLOCK, Clock
from gladd.resilience.spans import SpanEvents
from gladd.resilience.state import BreakerState
from gladd.settings import Settings
from gladd.store import Store
from gladd.store.configure import configured_store, prepare_retune
from gladd.store.gates import BreakerOverride
from gladd.version import __version__

T = TypeVar("T")

LAST_GOOD = "policies.last-good.toml"
"""In the state directory: the last policies file this daemon accepted."""


def given_policies(policies: Policies) -> LoadedPolicies:
    """``policies`` built in code rather than read from a file (tests, :mod:`gladd.testing`)."""
    digest = hashlib.sha256(repr(policies).encode()).hexdigest()
    return LoadedPolicies(policies=policies, source="(given)", sha256=digest, data=b"")


class StoreHealth:
    """Whether the store is open and answers: the ``database:connection`` check, and the
    open state the task routes, health and metrics are driven by."""

    def __init__(self, board: HealthBoard, store: Store) -> None:
        self.board = board
        self.store = store
        self.opened = False
        """Set once ``store.open()`` has returned (migrations done): tasks can be taken."""
        self._failing: bool | None = None  # None: not known yet

    def not_opened_yet(self) -> None:
        self._publish(Status.WARN, "not opened yet")

    def open(self) -> None:
        """``store.open()`` has returned."""
        self.opened = True
        self.heard(None)

    def heard(self, error: StoreError | None) -> None:
        """Whether the store answers, from whichever part of the daemon last asked it;
        logged once per change, not once per failed query."""
        failing = error is not None
        if not failing and not self.opened:
            # A ping can answer while open() still waits (a pool up, its migration behind
            # another node's lock): until open() returns, the store cannot take tasks.
            return
        if error is not None:
            self._publish(Status.FAIL, str(error))
        elif self._failing is not False:
            self._publish(Status.PASS, "open")
        if failing != self._failing:
            if error is not None:
                logger.error("task store unavailable: {}", error)
            elif self._failing:
                logger.success("task store {} answers again", self.store.url)
            self._failing = failing

    def _publish(self, status: Status, output: str) -> None:
        self.board.publish(
            Check(
                component="database",
                measurement="connection",
                status=status,
                observed_value=self.store.url,
                output=output,
                affects_readiness=True,
            )
        )


class Runtime:
    """Every subsystem of one node, wired as the daemon runs them; nothing started.

    Parameters past ``loaded`` are for tests and :mod:`gladd.testing`: a ``store`` instead
    of the one ``settings.store_url`` names, an ``inner_transport`` under each service's
    resilient transport, the ``environ`` plugins read secrets from, the ``clock`` the
    resilience engine and the executor time with and the wall clock ``now`` the store's
    times are in.
    """

    def __init__(
        self,
        settings: Settings,
        loaded: LoadedPolicies | Policies,
        *,
        broken_on_disk: PolicyError | None = None,
        on_reload_start: Callable[[], None] | None = None,
        on_reloaded: ReloadListener | None = None,
        store: Store | None = None,
        inner_transport: Callable[[str], httpx.AsyncBaseTransport] | None = None,
        environ: Mapping[str, str] | None = None,
        entry_points: bool = True,
        clock: Clock = SYSTEM_CLOCK,
        now: Callable[[], datetime] = utcnow,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self._now = now
        if isinstance(loaded, Policies):
            loaded = given_policies(loaded)
        self.served = Served(generation=1, loaded=loaded)
        self.broken_on_disk = broken_on_disk
        """The policies file on disk is broken and a last good copy is served."""
        self._environ = environ
        self._entry_points = entry_points
        self.reloads = Reloads()
        self.reloads.record("start", "applied", generation=1, at=time.time())
        self.reloader = Reloader(
            path=settings.policies_path,
            served=lambda: self.served,
            prepare=self.prepare_policies,
            last_good=settings.state_dir / LAST_GOOD,
            # The record first: the health published on each verdict reads it.
            listeners=[self.reloads.heard, self._reload_history, self._reload_reported]
            + ([on_reloaded] if on_reloaded is not None else []),
            on_start=on_reload_start,
            check=self._plugin_problems,
        )
        self.policy_history = PolicyHistory()
        """The generations served since start and the last rejection (``/policies``)."""
        self._start_history(loaded, broken_on_disk)
        self.board = HealthBoard(version=__version__, service_id=settings.node_name)
        self.counters = Counters()
        sinks: list[Sink] = [self.counters, LogSink(logger)]
        if tracing.current() is not None:
            sinks.append(SpanEvents())
        self.resilience = Resilience(loaded.policies, sinks=sinks, clock=clock, now=now)
        self.plugins = PluginHost(
            (),
            self.policies,
            self.resilience,
            settings.state_dir,
            environ=environ,
            inner_transport=inner_transport,
        )
        self.kinds = KindRegistry(builtin_kinds())
        # The one place that knows about store backends outside gladd.store.
        self.store = store or configured_store(
            settings.store_url, loaded.policies, guard=self.resilience.database().call
        )
        self.single_process = self.store.capabilities.single_process
        """Only this process uses the store: the start-up rescue takes every running task."""
        self.store_health = StoreHealth(self.board, self.store)
        self.tasks = TaskService(
            self.store, self.kinds, self.policies, now=now, breaker_state=self._breaker_state
        )
        self.executor = Executor(
            store=self.store,
            kinds=self.kinds,
            policies=self.policies,
            worker_id=worker_id or f"{settings.node_name}:{os.getpid()}:{secrets.token_hex(3)}",
            now=now,
            clock=clock,
            rescue_all_at_start=self.single_process,
            breaker_for=self.resilience.task_breaker,
            store_health=self.store_health.heard,
            context_for=self.plugins.context_for,
            cooldowns=self.resilience.cooldowns,
            on_breakers=lambda found: self.resilience.sync_isolated({o.name: o.by for o in found}),
            # Built below: the metrics read the executor, and the executor reports to them.
            observe_task=lambda *a: self.metrics.observe_task(*a),  # noqa: PLW0108
            observe_ticks=lambda *a: self.metrics.observe_ticks(*a),  # noqa: PLW0108
            observe_lateness=lambda s: self.metrics.observe_lateness(s),  # noqa: PLW0108
        )
        self.throughput = ThroughputRing(self.executor.statistics)
        """This node's last hour of attempts, per minute (the console's overview chart)."""
        self.pool_monitor = PoolMonitor(self.store, self.policies)
        self.lag_monitor = LagMonitor(self.policies)
        watched = Watched(
            store=self.store,
            policies=self.policies,
            generation=lambda: self.served.generation,
            resilience=self.resilience,
            executor=self.executor,
            executor_running=lambda: self.store_health.opened,
            pool=self.pool_monitor,
            lag=self.lag_monitor,
            reloads=self.reloads,
            counters=self.counters,
        )
        self.health_checker = HealthChecker(self.board, watched, on_ping=self.store_health.heard)
        self.metrics = Metrics(
            watched,
            board=self.board,
            checker=self.health_checker,
            version=__version__,
            node=settings.node_name,
        )
        self.publish_policies()
        self.store_health.not_opened_yet()

    def _breaker_state(self, kind: str) -> BreakerState | None:
        breaker = self.resilience.task_breaker(kind)
        return None if breaker is None else breaker.state

    async def persist_breaker(self, name: str, isolate: bool, by: str) -> None:
        """Store an operator's isolate (or reset) of breaker ``name`` for every node."""
        if isolate:
            await self.store.isolate_breaker(
                BreakerOverride(name=name, by=by, created_at=self._now())
            )
        else:
            await self.store.reset_breaker(name)

    def console_deps(self, *, token: str | None, read_only: bool) -> ConsoleDeps:
        """What the console at ``/ui`` reads and acts on (:mod:`gladd.console`)."""
        return ConsoleDeps(
            tasks=self.tasks,
            board=self.board,
            resilience=self.resilience,
            throughput=self.throughput,
            policies_file=self.policies_file,
            now=self._now,
            node=self.settings.node_name,
            store_open=lambda: self.store_health.opened,
            persist_breaker=self.persist_breaker,
            policy_history=self.policy_history,
            token=token,
            read_only=read_only,
        )

    def policies_file(self) -> PoliciesFile:
        """The policies served now, as their file was read."""
        loaded = self.served.loaded
        return PoliciesFile(
            source=loaded.source,
            sha256=loaded.sha256,
            generation=self.served.generation,
            text=loaded.data.decode("utf-8", "replace"),
        )

    def wall_now(self) -> datetime:
        """The wall clock the store's times are on."""
        return self._now()

    def policies(self) -> Policies:
        """The policies served now (a reload swaps them)."""
        return self.served.loaded.policies

    def load_plugins(self, plugins: Discovery | Sequence[Plugin] | None = None) -> None:
        """Start-up: discover and import the plugins (or take ``plugins``), log what was
        found and refused, and register their kinds. Before the plugin host serves."""
        if plugins is None:
            plugins = discover_plugins(
                self.policies(),
                self.settings.plugin_paths,
                entry_points=self._entry_points,
                environ=self._environ,
            )
            plugins.log()
        for kind in self.plugins.load(plugins):
            self.kinds.register(kind)

    async def publish_kinds(self) -> None:
        """Once the store is open: publish the kinds this node serves (with their payload
        schemas) in the store's catalogue, which clients validate enqueues against without
        importing plugins. Plugins load only at start, so this is the one publication of
        a run; a kind no longer served (its plugin removed) leaves the catalogue with it.
        A failure is logged, not raised: the node serves tasks all the same."""
        node = self.settings.node_name
        try:
            await self.store.publish_kinds(node, kind_specs(self.kinds), now=self._now())
        except StoreError as exc:
            logger.warning(
                "could not publish this node's task kinds to the store ({}): clients that "
                "validate against the catalogue may refuse its plugins' kinds until the next "
                "start",
                exc,
            )
            return
        logger.info(
            "published {} task kind(s) of node {} to the store", len(self.kinds.names()), node
        )

    # -- live reload ----------------------------------------------------------------------

    def prepare_policies(self, served: Served, changes: list[Change]) -> Callable[[], None]:
        """Caddy's order. Prepare: every subsystem sets up what the new generation needs,
        touching no live state; any failure refuses the reload with nothing changed. The
        returned commit then takes each subsystem's prepared state live (assignments only,
        nothing that can fail) and swaps the served generation last."""
        policies = served.loaded.policies
        resilience = self._prepared("the resilience engine", self.resilience.prepare, policies)
        store = self._prepared("the task store", prepare_retune, self.store, policies)
        plugins = self._prepared("the plugins", self.plugins.prepare, policies, resilience)

        def commit() -> None:
            for result in resilience.commit():
                if not result.kept_state:
                    logger.warning("breaker/budget {} was reset: {}", result.name, result.reason)
            store()
            plugins.commit()
            self.served = served
            self.broken_on_disk = None
            self.executor.wake()

        return commit

    def _prepared(self, what: str, prepare: Callable[..., T], *args: Any) -> T:
        """``prepare(*args)``; a failure becomes a PolicyError naming ``what`` refused."""
        path = str(self.reloader.path)
        try:
            return prepare(*args)
        except PolicyError as exc:
            raise PolicyError(path, exc.problems) from exc
        except Exception as exc:  # a subsystem that cannot take the rules refuses them
            logger.opt(exception=exc).debug("preparing {} for new policies failed", what)
            message = f"{what} could not take these policies ({type(exc).__name__}: {exc})"
            raise PolicyError(path, [Problem(path="", message=message)]) from exc

    def _plugin_problems(self, policies: Policies) -> list[Problem]:
        """A reload that would leave a loaded plugin without its service, a schedule
        without its kind or with a payload its kind refuses, or a partition on a payload
        field its kind does not declare, is refused."""
        return [*self.plugins.check(policies), *registry_problems(policies, self.kinds)]

    def _start_history(self, loaded: LoadedPolicies, broken_on_disk: PolicyError | None) -> None:
        at = self._now()
        self.policy_history.applied(
            generation=1,
            at=at,
            trigger="start",
            sha256=loaded.sha256,
            source=loaded.source,
            data=loaded.data,
        )
        if broken_on_disk is not None:  # started from the last good copy
            self.policy_history.rejected(
                at=at,
                trigger="start",
                sha256="",
                errors=[p.render(broken_on_disk.file) for p in broken_on_disk.problems],
                generation=1,
            )

    def _reload_history(self, result: ReloadResult) -> None:
        history = self.policy_history
        if result.outcome == "applied":
            loaded = self.served.loaded  # committed: the generation this result names
            history.applied(
                generation=result.generation,
                at=self._now(),
                trigger=result.trigger,
                sha256=result.sha256,
                source=loaded.source,
                data=loaded.data,
                changes=[c.render() for c in result.changes],
            )
        elif result.outcome == "rejected":
            history.rejected(
                at=self._now(),
                trigger=result.trigger,
                sha256=result.sha256,
                errors=result.errors,
                generation=result.generation,
            )
        elif result.resolved:
            history.resolve(
                at=self._now(), by=f"the file put back to generation {result.generation}"
            )

    def _reload_reported(self, result: ReloadResult) -> None:
        if result.outcome == "applied" or result.sha256 == self.served.loaded.sha256:
            self.broken_on_disk = None  # the file on disk is good (again)
        self.publish_policies()

    def publish_policies(self) -> None:
        """The ``policies:*`` checks, both at once, so no reader sees a verdict beside a
        stale one."""
        self.board.publish(reload_check(self.reloads.last, at=time.time()))
        loaded = self.served.loaded
        status, output = Status.PASS, f"{loaded.source} sha256 {loaded.sha256[:12]}"
        rejection = self.reloader.last_rejection
        if rejection is not None:
            status = Status.WARN
            output = "last reload rejected, serving the last good rules: " + "; ".join(
                rejection.errors
            )
        elif self.broken_on_disk is not None:
            status = Status.WARN
            output = f"serving the last good copy; on disk: {self.broken_on_disk}"
        self.board.publish(
            Check(
                component="policies",
                measurement="generation",
                status=status,
                observed_value=self.served.generation,
                output=output,
            )
        )
