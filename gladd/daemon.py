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

import random
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.admin.app import create_app
from gladd.admin.server import AdminServer, bind_socket
from gladd.console.app import console_app
from gladd.durations import format_duration
from gladd.errors import (
    PolicyError,
    StartupError,
    StopIncomplete,
    StoreError,
    StoreUnusable,
)
from gladd.executor.registry_checks import registry_problems
from gladd.light_settings import store_digest
from gladd.notify import Notifier, run_watchdog, watchdog_interval
from gladd.policies import LoadedPolicies, Policies, placed
from gladd.reload.reloader import ReloadResult, write_last_good
from gladd.reload.watch import watch_policies
from gladd.resilience.pacing import Pacer, store_backoff
from gladd.runtime import LAST_GOOD, Runtime
from gladd.settings import Settings
from gladd.version import __version__

STOP_MARGIN = 5.0
"""Seconds past the shutdown grace for subsystems to write their last state."""

STOP_NOW_LIMIT = 3.0
"""Seconds a second stop signal leaves to release the running tasks before gladd exits."""

UNRELEASED_NAMED = 20
"""At most this many unreleased task ids are listed in the log line."""

Starter = Callable[..., Coroutine[Any, Any, None]]
"""A subsystem's ``run(*, task_status)``: started with ``task_group.start()``."""


class Daemon:
    """One running gladd: the lifecycle (start order, signals, stop) of the subsystems a
    :class:`~gladd.runtime.Runtime` builds."""

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
        self.runtime = Runtime(
            settings,
            loaded,
            broken_on_disk=broken_on_disk,
            on_reload_start=self._reloading,
            on_reloaded=self._reload_notified,
        )
        self._reload_announced = False
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

    def policies(self) -> Policies:
        return self.runtime.policies()

    async def run(self) -> None:
        rt = self.runtime
        rt.load_plugins()
        # What `gladd check` refuses against the kinds (a schedule's kind no plugin loaded, a
        # payload its schema refuses, a partition field no payload has) refuses the start
        # too: a schedule must not enqueue dead tasks, nor a limit miscount live ones.
        against_kinds = registry_problems(rt.policies(), rt.kinds)
        if against_kinds and rt.served.loaded.data:
            located = placed(against_kinds, rt.served.loaded)
            raise PolicyError(rt.served.loaded.source, located)
        problem = self.settings.admin_bind_problem()
        if problem:
            raise StartupError(problem)
        sock = bind_socket(self.settings.admin_host, self.settings.admin_port)
        token = self.settings.admin_token
        secret = token.get_secret_value() if token else None
        app = create_app(
            rt.board,
            tasks=rt.tasks,
            store_open=lambda: rt.store_health.opened,
            reload=rt.reloader.reload,
            metrics=rt.metrics.render,
            token=secret,
            store_sha256=store_digest(self.settings.store_url),
            resilience=rt.resilience,
            now=rt.wall_now,
            persist_breaker=rt.persist_breaker,
            policies=rt.policy_history,
            console=console_app(
                rt.console_deps(token=secret, read_only=self.settings.admin_read_only)
            ),
            read_only=self.settings.admin_read_only,
            own_names=[self.settings.admin_host],
        )
        admin = AdminServer(app, sock)
        _ensure_state_dir(self.settings.state_dir)
        if rt.broken_on_disk is None:
            write_last_good(self.settings.state_dir / LAST_GOOD, rt.served.loaded.data)
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
                await tg.start(rt.reloader.run)
                await tg.start(self._watch_policies)
                # Monitors never stop by themselves: they run until everything is cancelled.
                await tg.start(rt.lag_monitor.run)
                await tg.start(rt.pool_monitor.run)
                await tg.start(rt.health_checker.run)
                await tg.start(rt.throughput.run, rt.wall_now)
                await self._run_subsystems(
                    [admin.run, self._run_tasks], [admin.stop, self._stop_tasks]
                )
                tg.cancel_scope.cancel()
        finally:
            sock.close()
            with anyio.CancelScope(shield=True) as closing:
                if self._stop_signals > 1:
                    closing.deadline = anyio.current_time() + STOP_NOW_LIMIT
                await rt.store.close()
        if self._fatal is not None:
            raise self._fatal
        unreleased = self._unreleased()
        logger.info("gladd stopped")
        if unreleased is not None:
            raise StopIncomplete(unreleased)

    def _unreleased(self) -> str | None:
        """Log the tasks this stop left ``running`` in the store, if any; the message."""
        unreleased = self.runtime.executor.unreleased
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
            if self.runtime.single_process
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
            self.runtime.board.started = True
            status = f"serving {self.runtime.served.describe()}"
            self.notifier.ready(status=status)
            logger.info(
                "gladd {} ready on node {}: {}", __version__, self.settings.node_name, status
            )
            await self._stop.wait()
            grace = self.policies().executor.shutdown_grace
            self.runtime.board.stopping = True
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
        if not await self._open_store() or self._stop.is_set():
            return
        await self.runtime.publish_kinds()
        # The plugins' clients outlive the executor's drain: running tasks still use them.
        async with self.runtime.plugins.serving():
            await self.runtime.executor.run()

    def _stop_tasks(self) -> None:
        if self._opening is not None:
            self._opening.cancel()  # an open that hangs on an unanswering server ends now
        self.runtime.executor.stop()

    async def _open_store(self) -> bool:
        """Open the store, trying again after a jittered backoff (``database.retry``'s
        schedule) while it fails — unless it never can: a corrupt file stops the daemon."""
        store, health = self.runtime.store, self.runtime.store_health
        while not self._stop.is_set():
            with anyio.CancelScope() as self._opening:
                try:
                    await store.open()
                except StoreUnusable as exc:
                    health.heard(exc)
                    self._fatal = StartupError(f"the task store cannot be used: {exc}")
                    self._stop.set()
                    return False
                except StoreError as exc:
                    health.heard(exc)
                    delay = self._store_pacer.next_delay()
                    logger.info("retrying to open the task store in {:.3g}s", delay)
                    with anyio.move_on_after(delay):
                        await self._stop.wait()
                    continue
            if self._opening.cancelled_caught:
                return False
            self._store_pacer.succeeded()
            health.open()
            logger.info("task store open: {}", store.url)
            return True
        return False

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    logger.info("SIGHUP received: reloading {}", self.runtime.reloader.path)
                    self.runtime.reloader.request("signal")
                else:
                    self._stop_signals += 1
                    self._stopping(name)

    def _stopping(self, name: str) -> None:
        """Stop with the grace; stop now on a second signal; on a third, cancel it all."""
        if self._stop_signals == 1 and not self._stop.is_set():
            self.interrupted_at_start = name == "SIGINT" and not self.runtime.board.started
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
            self.runtime.executor.stop_now()
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
        reloader = self.runtime.reloader
        await watch_policies(reloader.path, reloader.request, task_status=task_status)

    def _reloading(self) -> None:
        self._reload_announced = True
        self.notifier.reloading()

    def _reload_notified(self, result: ReloadResult) -> None:
        if self._reload_announced:
            # After RELOADING=1 systemd waits for READY=1, whatever the verdict.
            self._reload_announced = False
            verdict = " (last reload rejected)" if result.outcome == "rejected" else ""
            self.notifier.ready(status=f"serving {self.runtime.served.describe()}{verdict}")


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
