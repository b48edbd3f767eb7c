"""The composition root: builds every subsystem from Settings and runs them in one task group.

Start-up order matters: subsystems are started with ``task_group.start()`` so READY=1 is
sent to systemd only once all of them are up. Stopping is one path for every cause
(SIGTERM, SIGINT, a fatal subsystem error): STOPPING=1, stop the subsystems within the
policies' shutdown grace, then cancel whatever is left.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd import __version__
from gladd.admin import AdminServer, bind_socket, create_app
from gladd.durations import format_duration
from gladd.errors import StartupError, StoreError
from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.executor.runner import Executor
from gladd.executor.service import TaskService
from gladd.health import Check, HealthBoard, Status
from gladd.notify import Notifier, run_watchdog, watchdog_interval
from gladd.policies import LoadedPolicies, Policies
from gladd.resilience import Counters, LogSink, Resilience
from gladd.settings import Settings
from gladd.store.configure import configured_store

STOP_MARGIN = 5.0
"""Seconds past the shutdown grace for subsystems to write their last state."""

Starter = Callable[..., Coroutine[Any, Any, None]]
"""A subsystem's ``run(*, task_status)``: started with ``task_group.start()``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """The policies generation this daemon is serving."""

    generation: int
    loaded: LoadedPolicies

    def describe(self) -> str:
        return f"policies generation {self.generation} ({self.loaded.sha256[:12]})"


class Daemon:
    """One running gladd: owns the task group, the stop event and every subsystem."""

    def __init__(self, settings: Settings, loaded: LoadedPolicies, notifier: Notifier) -> None:
        self.settings = settings
        self.notifier = notifier
        self.served = Served(generation=1, loaded=loaded)
        self.board = HealthBoard(version=__version__, service_id=settings.node_name)
        self.kinds = KindRegistry(builtin_kinds())
        self.counters = Counters()
        self.resilience = Resilience(loaded.policies, sinks=[self.counters, LogSink(logger)])
        self.store = configured_store(
            settings.store_url, loaded.policies, guard=self.resilience.database().call
        )
        self.tasks: TaskService | None = None
        self.executor: Executor | None = None
        self._stop = anyio.Event()
        self._everything: anyio.CancelScope | None = None
        self._publish_policies()
        self._publish_store(Status.WARN, "not opened yet")

    def policies(self) -> Policies:
        return self.served.loaded.policies

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        problem = self.settings.admin_bind_problem()
        if problem:
            raise StartupError(problem)
        sock = bind_socket(self.settings.admin_host, self.settings.admin_port)
        token = self.settings.admin_token
        app = create_app(
            self.board,
            tasks=lambda: self.tasks,
            token=token.get_secret_value() if token else None,
        )
        admin = AdminServer(app, sock)
        pidfile = _write_pidfile(self.settings.state_dir)
        try:
            async with anyio.create_task_group() as tg:
                self._everything = tg.cancel_scope
                # Signals and the watchdog outlive the subsystems: systemd wants pings
                # until the very end, and a second SIGTERM must still cut the grace short.
                await tg.start(self._watch_signals)
                interval = watchdog_interval()
                if interval is not None:
                    await tg.start(run_watchdog, self.notifier, interval)
                await self._run_subsystems(
                    [admin.run, self._run_tasks], [admin.stop, self._stop_tasks]
                )
                tg.cancel_scope.cancel()
        finally:
            pidfile.unlink(missing_ok=True)
            sock.close()
            with anyio.CancelScope(shield=True):
                await self.store.close()
        logger.info("gladd stopped")

    async def _run_subsystems(
        self, starters: list[Starter], stoppers: list[Callable[[], None]]
    ) -> None:
        async with anyio.create_task_group() as subsystems:
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
            subsystems.cancel_scope.deadline = anyio.current_time() + grace + STOP_MARGIN
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
            rescue_all_at_start=self.settings.store_url.startswith("sqlite"),
            breaker_for=self.resilience.task_breaker,
        )
        if self._stop.is_set():
            return
        await self.executor.run()

    def _stop_tasks(self) -> None:
        if self.executor is not None:
            self.executor.stop()

    async def _open_store(self) -> bool:
        delay = 0.5
        while not self._stop.is_set():
            try:
                await self.store.open()
            except StoreError as exc:
                self._publish_store(Status.FAIL, str(exc))
                logger.error("task store unavailable, retrying in {:g}s: {}", delay, exc)
                with anyio.move_on_after(delay):
                    await self._stop.wait()
                delay = min(delay * 2, 30.0)
                continue
            self._publish_store(Status.PASS, "open")
            logger.info("task store open: {}", self.store.url)
            return True
        return False

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
                    # Live reload arrives with the reload subsystem; until then, say so.
                    logger.info(
                        "SIGHUP received: live reload is not available yet; "
                        "restart gladd to apply policy changes"
                    )
                elif self._stop.is_set() and self._everything is not None:
                    logger.warning("{} received again: stopping now, without grace", name)
                    self._everything.cancel()
                else:
                    logger.info("{} received: stopping", name)
                    self._stop.set()

    def _publish_policies(self) -> None:
        self.board.publish(
            Check(
                component="policies",
                measurement="generation",
                observed_value=self.served.generation,
                output=f"{self.served.loaded.source} sha256 {self.served.loaded.sha256[:12]}",
            )
        )


def _write_pidfile(state_dir: Path) -> Path:
    """``STATE_DIR/gladd.pid``, so ``gladd reload`` finds the daemon outside systemd."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / "gladd.pid"
        path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        raise StartupError(
            f"state directory {state_dir} is not writable ({exc.strerror}); "
            "set --state-dir / GLADD_STATE_DIR to a directory gladd may write"
        ) from None
    return path
