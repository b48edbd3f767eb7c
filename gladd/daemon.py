"""The composition root: builds every subsystem from Settings and runs them in one task group.

Start-up order matters: subsystems are started with ``task_group.start()`` so READY=1 is
sent to systemd only once all of them are up. Stopping is one path for every cause
(SIGTERM, SIGINT, a fatal subsystem error): STOPPING=1, stop the subsystems within the
policies' shutdown grace, then cancel whatever is left.

A second SIGTERM or SIGINT means "stop now": running tasks are cancelled and released to
pending at once (no attempt spent), within :data:`STOP_NOW_LIMIT`; a third cuts even that
short. However the stop went, tasks whose release could not be written are named in the
log and the run ends with :class:`~gladd.errors.StopIncomplete` (the command exits 75):
they stay ``running`` in the store until a lease rescue returns them.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.admin.app import create_app
from gladd.admin.server import AdminServer, bind_socket
from gladd.durations import format_duration
from gladd.errors import (
    PolicyError,
    Problem,
    StartupError,
    StopIncomplete,
    StoreError,
    StoreUnusable,
)
from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.executor.runner import Executor
from gladd.executor.service import TaskService
from gladd.notify import Notifier, run_watchdog, watchdog_interval
from gladd.observe.health import Check, HealthBoard, Status
from gladd.observe.health_checks import HealthChecker, reload_check
from gladd.observe.lag import LagMonitor
from gladd.observe.metrics import Metrics
from gladd.observe.pool import PoolMonitor
from gladd.observe.reloads import Reloads
from gladd.observe.watched import Watched
from gladd.plugins import PluginHost, discover_plugins
from gladd.policies import LoadedPolicies, Policies
from gladd.reload.diff import Change
from gladd.reload.reloader import Reloader, ReloadResult, Served, write_last_good
from gladd.reload.watch import watch_policies
from gladd.resilience import Counters, LogSink, Resilience
from gladd.resilience.pacing import Pacer, store_backoff
from gladd.settings import Settings
from gladd.store.configure import configured_store, prepare_retune
from gladd.version import __version__

STOP_MARGIN = 5.0
"""Seconds past the shutdown grace for subsystems to write their last state."""

STOP_NOW_LIMIT = 3.0
"""Seconds a second stop signal leaves to release the running tasks before gladd exits."""

UNRELEASED_NAMED = 20
"""At most this many unreleased task ids are listed in the log line."""

T = TypeVar("T")

Starter = Callable[..., Coroutine[Any, Any, None]]
"""A subsystem's ``run(*, task_status)``: started with ``task_group.start()``."""


LAST_GOOD = "policies.last-good.toml"
"""In the state directory: the last policies file this daemon accepted."""


class Daemon:
    """One running gladd: owns the task group, the stop event and every subsystem."""

    def __init__(
        self,
        settings: Settings,
        loaded: LoadedPolicies,
        notifier: Notifier,
        *,
        broken_on_disk: PolicyError | None = None,
    ) -> None:
        self.settings = settings
        self.notifier = notifier
        self.served = Served(generation=1, loaded=loaded)
        self.reloads = Reloads()
        self.reloads.record("start", "applied", generation=1, at=time.time())
        self.reloader = Reloader(
            path=settings.policies_path,
            served=lambda: self.served,
            prepare=self._prepare_policies,
            last_good=settings.state_dir / LAST_GOOD,
            # The record first: the health published on each verdict reads it.
            listeners=[self.reloads.heard, self._reload_reported],
            on_start=self._reloading,
            check=self._plugin_problems,
        )
        self._broken_on_disk = broken_on_disk
        self._reload_announced = False
        self.board = HealthBoard(version=__version__, service_id=settings.node_name)
        self.counters = Counters()
        self.resilience = Resilience(loaded.policies, sinks=[self.counters, LogSink(logger)])
        discovery = discover_plugins(loaded.policies, settings.plugin_paths)
        discovery.log()
        self.plugins = PluginHost(discovery, self.policies, self.resilience, settings.state_dir)
        self.kinds = KindRegistry([*builtin_kinds(), *self.plugins.kinds()])
        self.store = configured_store(
            settings.store_url, loaded.policies, guard=self.resilience.database().call
        )
        self.tasks: TaskService | None = None
        self.executor: Executor | None = None
        self.pool_monitor = PoolMonitor(self.store, self.policies)
        self.lag_monitor = LagMonitor(self.policies)
        watched = Watched(
            store=self.store,
            policies=self.policies,
            generation=lambda: self.served.generation,
            resilience=self.resilience,
            executor=lambda: self.executor,
            pool=self.pool_monitor,
            lag=self.lag_monitor,
            reloads=self.reloads,
            counters=self.counters,
        )
        self.health_checker = HealthChecker(self.board, watched, on_ping=self.store_health)
        self.metrics = Metrics(
            watched,
            board=self.board,
            checker=self.health_checker,
            version=__version__,
            node=settings.node_name,
        )
        self._stop = anyio.Event()
        self._everything: anyio.CancelScope | None = None
        self._subsystems: anyio.CancelScope | None = None
        self._opening: anyio.CancelScope | None = None
        self._stop_signals = 0
        # A SIGINT before READY: the command exits 130, as for a Ctrl-C before signals
        # reach this daemon at all (see gladd.cli).
        self.interrupted_at_start = False
        self._fatal: StartupError | None = None  # why the daemon stopped by itself
        self._store_pacer = Pacer(lambda: store_backoff(self.policies()), random.Random())
        self._store_failing: bool | None = None  # None: not known yet
        self._store_opened = False  # set once store.open() has returned (migrations done)
        self._publish_policies()
        self._publish_store(Status.WARN, "not opened yet")

    def policies(self) -> Policies:
        return self.served.loaded.policies

    async def run(self) -> None:
        problem = self.settings.admin_bind_problem()
        if problem:
            raise StartupError(problem)
        sock = bind_socket(self.settings.admin_host, self.settings.admin_port)
        token = self.settings.admin_token
        app = create_app(
            self.board,
            tasks=lambda: self.tasks,
            reload=self.reloader.reload,
            metrics=self.metrics.render,
            token=token.get_secret_value() if token else None,
        )
        admin = AdminServer(app, sock)
        _ensure_state_dir(self.settings.state_dir)
        if self._broken_on_disk is None:
            write_last_good(self.settings.state_dir / LAST_GOOD, self.served.loaded.data)
        try:
            async with anyio.create_task_group() as tg:
                self._everything = tg.cancel_scope
                # Signals and the watchdog outlive the subsystems: systemd wants pings
                # until the very end, and a second SIGTERM must still cut the grace short.
                await tg.start(self._watch_signals)
                interval = watchdog_interval()
                if interval is not None:
                    await tg.start(run_watchdog, self.notifier, interval)
                # Reloads, like signals, run until the very end and are simply cancelled.
                await tg.start(self.reloader.run)
                await tg.start(self._watch_policies)
                # Monitors never stop by themselves: they run until everything is cancelled.
                await tg.start(self.lag_monitor.run)
                await tg.start(self.pool_monitor.run)
                await tg.start(self.health_checker.run)
                await self._run_subsystems(
                    [admin.run, self._run_tasks], [admin.stop, self._stop_tasks]
                )
                tg.cancel_scope.cancel()
        finally:
            sock.close()
            with anyio.CancelScope(shield=True) as closing:
                if self._stop_signals > 1:
                    closing.deadline = anyio.current_time() + STOP_NOW_LIMIT
                await self.store.close()
        if self._fatal is not None:
            raise self._fatal
        unreleased = self._unreleased()
        logger.info("gladd stopped")
        if unreleased is not None:
            raise StopIncomplete(unreleased)

    def _unreleased(self) -> str | None:
        """Log the tasks this stop left ``running`` in the store, if any; the message."""
        unreleased = self.executor.unreleased if self.executor is not None else []
        if not unreleased:
            return None
        named = ", ".join(str(task_id) for task_id in unreleased[:UNRELEASED_NAMED])
        more = (
            f" and {len(unreleased) - UNRELEASED_NAMED} more"
            if len(unreleased) > UNRELEASED_NAMED
            else ""
        )
        when = (
            "the next start rescues them"
            if self.store.capabilities.single_process
            else f"a rescue returns them once this worker's lease "
            f"({format_duration(self.policies().executor.lease)}) has run out"
        )
        message = (
            f"{len(unreleased)} task(s) could not be released: {named}{more}; they stay "
            f"running in the store until {when}, which counts toward executor.max_rescues"
        )
        logger.error("{}", message)
        return message

    async def _run_subsystems(
        self, starters: list[Starter], stoppers: list[Callable[[], None]]
    ) -> None:
        async with anyio.create_task_group() as subsystems:
            self._subsystems = subsystems.cancel_scope
            for start in starters:
                await subsystems.start(start)
            self.board.started = True
            status = f"serving {self.served.describe()}"
            self.notifier.ready(status=status)
            logger.info(
                "gladd {} ready on node {}: {}", __version__, self.settings.node_name, status
            )
            await self._stop.wait()
            grace = self.policies().executor.shutdown_grace
            self.board.stopping = True
            self.notifier.stopping(status=f"stopping (grace {format_duration(grace)})")
            logger.info("stopping: running tasks have {} to finish", format_duration(grace))
            for stop in reversed(stoppers):
                stop()
            # The executor enforces the grace itself and then writes its releases; this
            # deadline only catches a subsystem that fails to stop at all.
            subsystems.cancel_scope.deadline = min(
                subsystems.cancel_scope.deadline, anyio.current_time() + grace + STOP_MARGIN
            )
        if subsystems.cancel_scope.cancelled_caught:
            logger.warning("subsystems did not stop within the grace: cancelled")

    async def _run_tasks(self, *, task_status: TaskStatus[None]) -> None:
        """The store and the executor. READY does not wait for the database: while it is
        away the daemon runs, says so in health (not ready), and keeps trying."""
        task_status.started()
        if not await self._open_store():
            return
        self.tasks = TaskService(self.store, self.kinds, self.policies)
        self.executor = Executor(
            store=self.store,
            kinds=self.kinds,
            policies=self.policies,
            worker_id=f"{self.settings.node_name}:{os.getpid()}:{secrets.token_hex(3)}",
            rescue_all_at_start=self.store.capabilities.single_process,
            breaker_for=self.resilience.task_breaker,
            store_health=self.store_health,
            context_for=self.plugins.context_for,
            observe_task=self.metrics.observe_task,
        )
        if self._stop.is_set():
            return
        # The plugins' clients outlive the executor's drain: running tasks still use them.
        async with self.plugins.serving():
            await self.executor.run()

    def _stop_tasks(self) -> None:
        if self._opening is not None:
            self._opening.cancel()  # an open that hangs on an unanswering server ends now
        if self.executor is not None:
            self.executor.stop()

    async def _open_store(self) -> bool:
        """Open the store, trying again after a jittered backoff (``database.retry``'s
        schedule) while it fails — unless it never can: a corrupt file stops the daemon."""
        while not self._stop.is_set():
            with anyio.CancelScope() as self._opening:
                try:
                    await self.store.open()
                except StoreUnusable as exc:
                    self.store_health(exc)
                    self._fatal = StartupError(f"the task store cannot be used: {exc}")
                    self._stop.set()
                    return False
                except StoreError as exc:
                    self.store_health(exc)
                    delay = self._store_pacer.next_delay()
                    logger.info("retrying to open the task store in {:.3g}s", delay)
                    with anyio.move_on_after(delay):
                        await self._stop.wait()
                    continue
            if self._opening.cancelled_caught:
                return False
            self._store_pacer.succeeded()
            self._store_opened = True
            self.store_health(None)
            logger.info("task store open: {}", self.store.url)
            return True
        return False

    def store_health(self, error: StoreError | None) -> None:
        """Whether the store answers, from whichever part of the daemon last asked it;
        logged once per change, not once per failed query."""
        failing = error is not None
        if not failing and not self._store_opened:
            # A ping can answer while open() still waits (a pool up, its migration behind
            # another node's lock): until open() returns, the store cannot take tasks.
            return
        if error is not None:
            self._publish_store(Status.FAIL, str(error))
        elif self._store_failing is not False:
            self._publish_store(Status.PASS, "open")
        if failing != self._store_failing:
            if error is not None:
                logger.error("task store unavailable: {}", error)
            elif self._store_failing:
                logger.success("task store {} answers again", self.store.url)
            self._store_failing = failing

    def _publish_store(self, status: Status, output: str) -> None:
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

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    logger.info("SIGHUP received: reloading {}", self.reloader.path)
                    self.reloader.request("signal")
                else:
                    self._stop_signals += 1
                    self._stopping(name)

    def _stopping(self, name: str) -> None:
        """Stop with the grace; stop now on a second signal; on a third, cancel it all."""
        if self._stop_signals == 1 and not self._stop.is_set():
            self.interrupted_at_start = name == "SIGINT" and not self.board.started
            logger.info("{} received: stopping", name)
            self._stop.set()
            return
        if self._stop_signals <= 2:
            logger.warning(
                "{} received again: stopping now, releasing running tasks (at most {:g}s)",
                name,
                STOP_NOW_LIMIT,
            )
            self._stop.set()
            self._stop_tasks()
            if self.executor is not None:
                self.executor.stop_now()
            deadline = anyio.current_time() + STOP_NOW_LIMIT
            for scope in (self._subsystems, self._everything):
                if scope is not None:
                    scope.deadline = min(scope.deadline, deadline)
            return
        logger.warning("{} received a third time: stopping at once", name)
        if self._everything is not None:
            self._everything.cancel()

    # -- live reload ----------------------------------------------------------------------

    async def _watch_policies(self, *, task_status: TaskStatus[None]) -> None:
        await watch_policies(self.reloader.path, self.reloader.request, task_status=task_status)

    def _prepare_policies(self, served: Served, changes: list[Change]) -> Callable[[], None]:
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
            self._broken_on_disk = None
            if self.executor is not None:
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
        """A reload that would leave a loaded plugin without its service is refused."""
        return self.plugins.check(policies)

    def _reloading(self) -> None:
        self._reload_announced = True
        self.notifier.reloading()

    def _reload_reported(self, result: ReloadResult) -> None:
        if result.outcome == "applied" or result.sha256 == self.served.loaded.sha256:
            self._broken_on_disk = None  # the file on disk is good (again)
        self._publish_policies()
        if self._reload_announced:
            # After RELOADING=1 systemd waits for READY=1, whatever the verdict.
            self._reload_announced = False
            verdict = " (last reload rejected)" if result.outcome == "rejected" else ""
            self.notifier.ready(status=f"serving {self.served.describe()}{verdict}")

    def _publish_policies(self) -> None:
        # Both policies checks move together, so no reader sees a verdict beside a stale one.
        self.board.publish(reload_check(self.reloads.last, at=time.time()))
        loaded = self.served.loaded
        status, output = Status.PASS, f"{loaded.source} sha256 {loaded.sha256[:12]}"
        rejection = self.reloader.last_rejection
        if rejection is not None:
            status = Status.WARN
            output = "last reload rejected, serving the last good rules: " + "; ".join(
                rejection.errors
            )
        elif self._broken_on_disk is not None:
            status = Status.WARN
            output = f"serving the last good copy; on disk: {self._broken_on_disk}"
        self.board.publish(
            Check(
                component="policies",
                measurement="generation",
                status=status,
                observed_value=self.served.generation,
                output=output,
            )
        )


def _ensure_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / ".gladd-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"state directory {state_dir} is not writable ({exc.strerror}); "
            "set --state-dir / GLADD_STATE_DIR to a directory gladd may write"
        ) from None
