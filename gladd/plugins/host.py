"""The plugin host: owns every client, scratch file and plugin resource, and closes them.

- One ``httpx.AsyncClient`` per service any plugin declares, shared by all of them, whose
  transport applies the service's policies (see :class:`ServiceTransport`). Clients are
  created when the host starts and closed when it stops; on a reload that changes a
  service's binding, its client is replaced and the old one closed once the last attempt
  using it is done — never under a request in flight. The replacement shares the service's
  flow control (:meth:`Resilience.outbound`: bulkhead, rate, cooldown), reconfigured in
  place, so a new ``max_in_flight`` or ``rate`` bounds the old client's requests still in
  flight and the new client's together. A reload first :meth:`prepares
  <PluginHost.prepare>` the new settings and clients (what can fail fails there, with
  nothing changed), then commits them.
- Per attempt (:meth:`PluginHost.context_for`, the executor's context factory): a context
  with the plugin's clients, settings and state, a logger bound to the plugin and task, and
  a scratch directory removed afterwards on every path (success, error, cancellation).
- Start hooks run at start (a failing one disables that plugin only: its tasks are retried
  later, with the reason); stop hooks run at stop, each bounded by :data:`HOOK_TIMEOUT`.

The seed app leaked sessions and file handles because each call site owned its own; here
no handler owns one, so none can be left open.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from anyio.abc import TaskStatus
from loguru import logger

from gladd.errors import (
    PluginLoadError,
    PolicyError,
    Problem,
    ResilienceTimeout,
    RetriesExhausted,
)
from gladd.executor.kinds import Enqueue, RegisteredKind, RetryLater, TaskContext, basic_context
from gladd.plugins.api import SERVICE_EXTENSION, Plugin, PluginRuntime
from gladd.plugins.boundary import plugin_kinds
from gladd.plugins.discover import Discovery, bind
from gladd.plugins.errors import ServiceTimeout
from gladd.policies import Policies, ServiceBinding
from gladd.resilience import AttemptClient, Resilience
from gladd.resilience.guards import ResiliencePlan
from gladd.store import Task
from gladd.version import __version__

if TYPE_CHECKING:
    from loguru import Logger

HOOK_TIMEOUT = 30.0
DISABLED_RETRY = 30.0
"""Seconds before a task of a plugin that failed to start is tried again."""


class ServiceTransport(httpx.AsyncBaseTransport):
    """Names the service on every request and response, and its timeouts as ours."""

    def __init__(self, service: str, inner: httpx.AsyncBaseTransport) -> None:
        self.service = service
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions[SERVICE_EXTENSION] = self.service
        try:
            response = await self.inner.handle_async_request(request)
        except (ResilienceTimeout, httpx.TimeoutException) as exc:
            raise ServiceTimeout(self.service, f"did not answer in time ({exc})") from exc
        except RetriesExhausted as exc:
            if isinstance(exc.last, ResilienceTimeout | httpx.TimeoutException):
                raise ServiceTimeout(
                    self.service, f"did not answer in time ({exc.last}, {exc.attempts} attempts)"
                ) from exc
            raise
        response.extensions[SERVICE_EXTENSION] = self.service
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginPlan:
    """New policies prepared for a :class:`PluginHost`: settings and clients built, none
    in use yet. ``commit`` only assigns (and hands the replaced clients to the closer)."""

    host: PluginHost
    settings: dict[str, Any]
    retire: list[str]
    """Services whose current client is replaced (or no longer wanted)."""
    opened: dict[str, _Lease]

    def commit(self) -> None:
        self.host._commit(self)


@dataclass(slots=True, kw_only=True)
class _Lease:
    """A service's client and the attempts using it, so a retired one closes when idle."""

    service: str
    client: httpx.AsyncClient
    binding: ServiceBinding
    users: int = 0
    retired: bool = False


class PluginHost:
    """Runs the loaded plugins: ``await tg.start(host.run)``; ``host.stop()`` after the
    executor has stopped (the host closes what running tasks use)."""

    def __init__(
        self,
        plugins: Discovery | Sequence[Plugin],
        policies: Callable[[], Policies],
        resilience: Resilience,
        state_dir: Path,
        *,
        environ: Mapping[str, str] | None = None,
        inner_transport: Callable[[str], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        """``plugins`` may be empty, to :meth:`load` them at start-up."""
        self.policies = policies
        self.resilience = resilience
        self.state_dir = state_dir
        self._environ = os.environ if environ is None else environ
        self._inner = inner_transport
        self.plugins: dict[str, Plugin] = {}
        self._settings: dict[str, Any] = {}
        self._by_kind: dict[str, Plugin] = {}
        self._state: dict[str, dict[str, Any]] = {}
        self.load(plugins)
        self._clients: dict[str, _Lease] = {}
        self._retired: list[_Lease] = []
        self._disabled: dict[str, str] = {}
        self._running = False
        self._stop = anyio.Event()
        self._closer_wanted = anyio.Event()
        self._scratch = state_dir / "scratch"

    def load(self, plugins: Discovery | Sequence[Plugin]) -> list[RegisteredKind]:
        """Take ``plugins`` too (before :meth:`serving`); their task kinds, for the
        executor's KindRegistry. Plugins given as such are bound to the policies here
        (:class:`PluginLoadError` if one cannot run under them)."""
        discovery = plugins if isinstance(plugins, Discovery) else self._bind(plugins)
        for plugin in discovery.plugins:
            self.plugins[plugin.name] = plugin
            self._state[plugin.name] = {}
            self._by_kind.update(dict.fromkeys((k.name for k in plugin.kinds), plugin))
        self._settings.update(discovery.settings)
        return plugin_kinds(discovery.plugins, self._settings.get)

    def _bind(self, plugins: Sequence[Plugin]) -> Discovery:
        settings: dict[str, Any] = {}
        for plugin in plugins:
            value, problems = bind(plugin, self.policies(), self._environ)
            if problems:
                detail = "; ".join(f"{p.path}: {p.message}" for p in problems)
                raise PluginLoadError(plugin.source or plugin.name, detail)
            settings[plugin.name] = value
        return Discovery(plugins=tuple(plugins), settings=settings)

    # -- what the daemon wires in ---------------------------------------------------------

    def kinds(self) -> list[RegisteredKind]:
        """The plugins' task kinds, for the executor's (and enqueue's) KindRegistry."""
        return plugin_kinds(self.plugins.values(), self._settings.get)

    def clients(self) -> dict[str, httpx.AsyncClient]:
        """The open client of each service, by name."""
        return {name: lease.client for name, lease in self._clients.items()}

    def check(self, policies: Policies) -> list[Problem]:
        """What would stop a plugin under ``policies`` (a reload should be refused)."""
        problems: list[Problem] = []
        for plugin in self.plugins.values():
            problems += bind(plugin, policies, self._environ)[1]
        return problems

    def prepare(self, policies: Policies, resilience: ResiliencePlan | None = None) -> PluginPlan:
        """Everything ``policies`` need, built without touching what runs: each plugin's
        settings, a client for each service whose binding changed (on ``resilience``, the
        prepared resilience plan, when given). Raises :class:`PolicyError` (file unnamed)
        when a plugin could not run under them; the plan's ``commit`` takes them live."""
        settings: dict[str, Any] = {}
        problems: list[Problem] = []
        for plugin in self.plugins.values():
            value, more = bind(plugin, policies, self._environ)
            problems += more
            settings[plugin.name] = value
        if problems:
            raise PolicyError("", problems)
        retire: list[str] = []
        opened: dict[str, _Lease] = {}
        if self._running:
            transport = resilience.transport if resilience is not None else None
            wanted = self._services(policies)
            try:
                for service in sorted(set(self._clients) | wanted):
                    lease = self._clients.get(service)
                    binding = policies.services.get(service)
                    if lease is not None and (binding is None or lease.binding != binding):
                        retire.append(service)
                        lease = None
                    if binding is not None and service in wanted and lease is None:
                        opened[service] = self._open(service, binding, transport)
            except BaseException:
                for unused in opened.values():  # nothing ever used them: they close at once
                    self._retire(unused)
                raise
        return PluginPlan(host=self, settings=settings, retire=retire, opened=opened)

    def apply(self, policies: Policies) -> None:
        """Take ``policies`` live at once (after ``Resilience.apply``): :meth:`prepare`,
        then commit. The replaced clients close as soon as no attempt uses them."""
        self.prepare(policies).commit()

    def _commit(self, plan: PluginPlan) -> None:
        self._settings.update(plan.settings)
        for service in plan.retire:
            self._retire(self._clients.pop(service))
            logger.info("service {}: binding changed, its HTTP client was replaced", service)
        self._clients.update(plan.opened)

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with self.serving():
            task_status.started()
            await self._stop.wait()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[PluginHost]:
        """Start the plugins for the duration of the block; close everything after it."""
        await anyio.to_thread.run_sync(_empty_dir, self._scratch)
        policies = self.policies()
        try:
            for service in sorted(self._services(policies)):
                self._clients[service] = self._open(service, policies.services[service])
            for plugin in self.plugins.values():
                await self._start(plugin)
            self._running = True
            async with anyio.create_task_group() as closer:
                closer.start_soon(self._close_retired)
                yield self
                closer.cancel_scope.cancel()
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                await self._shutdown()

    async def _start(self, plugin: Plugin) -> None:
        data_dir = self.state_dir / "plugins" / plugin.name
        data_dir.mkdir(parents=True, exist_ok=True)
        if plugin.start is None:
            return
        try:
            with anyio.fail_after(HOOK_TIMEOUT):
                await plugin.start(self._runtime(plugin))
        except Exception as exc:  # one broken plugin must not take the daemon down
            reason = f"start hook failed: {type(exc).__name__}: {exc}"
            self._disabled[plugin.name] = reason
            logger.error("plugin {} disabled: {}", plugin.name, reason)

    async def _shutdown(self) -> None:
        for plugin in reversed(list(self.plugins.values())):
            if plugin.stop is None or plugin.name in self._disabled:
                continue
            try:
                with anyio.fail_after(HOOK_TIMEOUT):
                    await plugin.stop(self._runtime(plugin))
            except Exception as exc:  # keep stopping the others
                logger.error(
                    "plugin {} stop hook failed: {}: {}", plugin.name, type(exc).__name__, exc
                )
        leases = [*self._clients.values(), *self._retired]
        self._clients, self._retired = {}, []
        for lease in leases:
            await lease.client.aclose()
        for state in self._state.values():
            state.clear()
        self._disabled.clear()
        await anyio.to_thread.run_sync(_empty_dir, self._scratch)

    def _runtime(self, plugin: Plugin) -> PluginRuntime:
        return PluginRuntime(
            name=plugin.name,
            http=self._http_for(plugin),
            settings=self._settings.get(plugin.name),
            logger=logger.bind(plugin=plugin.name),
            state=self._state[plugin.name],
            data_dir=self.state_dir / "plugins" / plugin.name,
        )

    # -- clients --------------------------------------------------------------------------

    def _services(self, policies: Policies) -> set[str]:
        wanted: set[str] = set()
        for plugin in self.plugins.values():
            if plugin.any_service:
                wanted |= set(policies.services)
            wanted |= {s for s in plugin.services if s in policies.services}
        return wanted

    def _open(
        self,
        service: str,
        binding: ServiceBinding,
        resilient: Callable[[str, httpx.AsyncBaseTransport | None], httpx.AsyncBaseTransport]
        | None = None,
    ) -> _Lease:
        inner = self._inner(service) if self._inner is not None else None
        make = resilient or self.resilience.transport
        transport = ServiceTransport(service, make(service, inner))
        # An AttemptClient, so a body read whole is read inside the attempt, under its timeout.
        client = AttemptClient(
            transport=transport,
            timeout=None,  # the service's policies time each attempt, body included
            headers={"User-Agent": f"gladd/{__version__}"},
        )
        return _Lease(service=service, client=client, binding=binding)

    def _retire(self, lease: _Lease) -> None:
        lease.retired = True
        self._retired.append(lease)
        self._closer_wanted.set()

    async def _close_retired(self) -> None:
        while True:
            await self._closer_wanted.wait()
            self._closer_wanted = anyio.Event()
            for lease in list(self._retired):
                await self._close_if_idle(lease)

    async def _close_if_idle(self, lease: _Lease) -> None:
        # Checked and removed with no await in between: each retired client closes once.
        if lease.users == 0 and lease in self._retired:
            self._retired.remove(lease)
            await lease.client.aclose()

    def _leases_for(self, plugin: Plugin) -> dict[str, _Lease]:
        if plugin.any_service:
            return dict(self._clients)
        return {s: self._clients[s] for s in plugin.services if s in self._clients}

    def _http_for(self, plugin: Plugin) -> dict[str, httpx.AsyncClient]:
        return {name: lease.client for name, lease in self._leases_for(plugin).items()}

    # -- one attempt ----------------------------------------------------------------------

    def context_for(
        self, task: Task, logger: Logger, enqueue: Enqueue
    ) -> AbstractAsyncContextManager[TaskContext]:
        """The executor's ContextFactory: the plugin's resources, or the basic context."""
        plugin = self._by_kind.get(task.kind)
        if plugin is None:
            return basic_context(task, logger, enqueue)
        return self._plugin_context(plugin, task, logger, enqueue)

    @asynccontextmanager
    async def _plugin_context(
        self, plugin: Plugin, task: Task, log: Logger, enqueue: Enqueue
    ) -> AsyncIterator[TaskContext]:
        if not self._running:
            raise RetryLater(DISABLED_RETRY, f"{plugin.name}: the plugin host is not running")
        if plugin.name in self._disabled:
            raise RetryLater(DISABLED_RETRY, f"{plugin.name}: {self._disabled[plugin.name]}")
        leases = self._leases_for(plugin)
        scratch = self._scratch / f"{task.id}-{task.attempt}-{secrets.token_hex(3)}"
        for lease in leases.values():
            lease.users += 1
        try:
            scratch.mkdir(parents=True)
            yield TaskContext(
                task=task,
                logger=log.bind(plugin=plugin.name),
                enqueue=enqueue,
                plugin=plugin.name,
                http={name: lease.client for name, lease in leases.items()},
                services={name: lease.binding for name, lease in leases.items()},
                settings=self._settings.get(plugin.name),
                scratch=scratch,
                state=self._state[plugin.name],
            )
        finally:
            with anyio.CancelScope(shield=True):
                await _remove(scratch)
                for lease in leases.values():
                    lease.users -= 1
                    await self._close_if_idle(lease)


async def _remove(directory: Path) -> None:
    try:
        directory.rmdir()  # noqa: ASYNC240 - an empty directory (the common case) is instant
    except FileNotFoundError:
        pass
    except OSError:
        await anyio.to_thread.run_sync(shutil.rmtree, directory, True)


def _empty_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
