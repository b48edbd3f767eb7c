"""Testing a plugin in a few lines: its handlers under your policies, its services mocked.

:class:`PluginTest` builds gladd as the daemon does (:class:`~gladd.runtime.Runtime`) on the
in-memory store and a fake clock, with each service's HTTP client ending in an
:class:`httpx.MockTransport` that calls your handler for that service. Everything between
your handler and the plugin's is the real thing: the plugin host, its settings binding
(``[plugins.NAME]``, secrets from ``environ``), the enqueue-time payload validation and
``check``, each service's resilient transport (retries, breakers, budgets, timeouts,
``Retry-After``), the executor's attempt (task timeout, the breaker that postpones kinds,
the error boundary) and the task's stored outcome::

    import httpx
    from gladd.testing import PluginTest

    import my_plugin

    POLICIES = '''
    [services.example]
    retry = "api"
    [retry.api]
    attempts = 3
    '''

    def example(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    async def test_ping() -> None:
        async with PluginTest(my_plugin, policies=POLICIES, services={"example": example}) as t:
            assert await t.run("example.ping", {"path": "/"}) == 200
            assert t.requests("example")[0].url.path == "/"

:meth:`PluginTest.run` runs one attempt of the task and returns its result, or raises
:class:`TaskFailed` saying how the attempt ended; :meth:`PluginTest.attempt` returns the
task as stored after its attempt instead (dead, pending again for a retry, postponed...).
Time stands still unless a test moves it (:meth:`PluginTest.advance`): the resilience
engine's waits (retry backoff, ``Retry-After``) pass at once on the fake clock, and a retry
the executor scheduled for later is due once the clock has been advanced to it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import httpx

from gladd.plugins.api import Plugin
from gladd.plugins.discover import load_file
from gladd.policies import LoadedPolicies, Policies, parse_policies
from gladd.resilience.clock import FakeClock
from gladd.runtime import Runtime
from gladd.settings import Settings
from gladd.store import Task, TaskState
from gladd.store.memory import MemoryStore

__all__ = ["EPOCH", "PluginTest", "ServiceHandler", "TaskFailed"]

ServiceHandler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
"""What answers a service's requests: a plain or ``async`` function, as for
:class:`httpx.MockTransport`."""

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
"""The fake wall clock's start: tasks' times are this plus the fake clock's advance."""

WORKER = "gladd.testing"


class TaskFailed(AssertionError):
    """:meth:`PluginTest.run`: the attempt did not succeed. ``task`` is as stored."""

    def __init__(self, task: Task) -> None:
        self.task = task
        how = task.state.value
        if task.state is TaskState.PENDING:
            how = f"pending again, due at +{(task.run_at - EPOCH).total_seconds():g}s"
        last = f": {task.errors[-1].type}: {task.errors[-1].message}" if task.errors else ""
        super().__init__(f"task {task.id} ({task.kind}) did not succeed ({how}){last}")


class PluginTest:
    """``async with PluginTest(plugin, policies=..., services=...) as t:`` — see the module.

    ``plugins``: :class:`~gladd.plugins.Plugin` objects, modules with a ``plugin``
    attribute, or the paths of such module files (imported as discovery imports them).
    ``policies``: the text of a policies.toml, or a :class:`~gladd.policies.Policies`.
    ``services``: the handler answering each service's requests (a service without one
    fails the test at its first request). ``environ``: what the plugins read secrets from
    (``token_env`` and the like), instead of ``os.environ``.
    """

    def __init__(
        self,
        *plugins: Plugin | ModuleType | Path,
        policies: str | Policies = "",
        services: Mapping[str, ServiceHandler] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.plugins = [_plugin_of(p) for p in plugins]
        self.policies = _policies(policies)
        self.clock = FakeClock()
        self._started_at = self.clock.monotonic()
        self._handlers = dict(services or {})
        self._requests: dict[str, list[httpx.Request]] = {}
        self._environ = dict(environ or {})
        self._stack: AsyncExitStack | None = None
        self.store = MemoryStore()
        self.runtime: Runtime | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> PluginTest:
        async with AsyncExitStack() as stack:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            settings = Settings(state_dir=state_dir, plugin_paths=())
            self.runtime = Runtime(
                settings,
                self.policies,
                store=self.store,
                inner_transport=self._transport,
                environ=self._environ,
                entry_points=False,
                clock=self.clock,
                now=self.now,
                worker_id=WORKER,
            )
            self.runtime.load_plugins(self.plugins)
            await self.store.open()
            stack.push_async_callback(self.store.close)
            self.runtime.store_health.open()
            await self.runtime.publish_kinds()
            await stack.enter_async_context(self.runtime.plugins.serving())
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # -- time -----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The fake wall clock (:data:`EPOCH` at the start), which tasks' times are in."""
        return EPOCH + timedelta(seconds=self.clock.monotonic() - self._started_at)

    def advance(self, seconds: float) -> None:
        """Move time on: open breakers' ``open_for`` passes, later retries become due."""
        self.clock.advance(seconds)

    # -- tasks ----------------------------------------------------------------------------

    async def enqueue(self, kind: str, payload: Any = None, **options: Any) -> Task:
        """Enqueue as the daemon does: the payload validated and the kind's ``check`` run
        (:class:`~gladd.errors.TaskRejected` if refused). Nothing runs yet."""
        tasks = self._running().tasks
        enqueued = await tasks.enqueue(kind, payload, **options)
        return await tasks.get(enqueued.id)

    async def attempt(self, kind: str, payload: Any = None, **options: Any) -> Task:
        """Enqueue a task and run its first attempt as the executor would; the task as
        stored after it (succeeded, dead, or pending again: a retry, a snooze, postponed
        by an open breaker)."""
        task = await self.enqueue(kind, payload, **options)
        ran = await self._attempt_due(until=task.id)
        if task.id not in ran:
            raise AssertionError(
                f"task {task.id} ({kind}) is not due yet (run_at "
                f"+{(task.run_at - EPOCH).total_seconds():g}s): advance() the clock first"
            )
        return ran[task.id]

    async def run(self, kind: str, payload: Any = None, **options: Any) -> Any:
        """:meth:`attempt`, and the handler's result (as stored: JSON) if it succeeded;
        else :class:`TaskFailed` with the task and its last error."""
        task = await self.attempt(kind, payload, **options)
        if task.state is not TaskState.SUCCEEDED:
            raise TaskFailed(task)
        return task.result

    async def run_due(self) -> list[Task]:
        """One attempt of every task due now (retries after :meth:`advance`, follow-ups a
        handler enqueued), in the order the executor claims them; each as stored after."""
        return list((await self._attempt_due(until=None)).values())

    async def get(self, task_id: int) -> Task:
        task = await self.store.get(task_id)
        if task is None:
            raise AssertionError(f"no task {task_id}")
        return task

    def requests(self, service: str) -> list[httpx.Request]:
        """What was sent to ``service``, in order (bodies read)."""
        return list(self._requests.get(service, []))

    # -- underneath -----------------------------------------------------------------------

    def _running(self) -> Runtime:
        if self.runtime is None or self._stack is None:
            raise RuntimeError("use PluginTest as `async with PluginTest(...) as t:`")
        return self.runtime

    async def _attempt_due(self, *, until: int | None) -> dict[int, Task]:
        """Claim due tasks one at a time and run one attempt of each through the
        executor's own attempt and completer (its statistics count them), until ``until``
        has had its attempt or none is due."""
        runtime = self._running()
        executor = runtime.executor
        ran: dict[int, Task] = {}
        while until is None or until not in ran:
            claimed = await self.store.claim(
                worker=WORKER, limit=1, now=self.now(), kinds=runtime.kinds.names()
            )
            if not claimed or claimed[0].id in ran:
                break
            task = claimed[0]
            await executor.attempts.run_one(executor.ledger.hold(task))
            await executor.completer.flush()
            ran[task.id] = await self.get(task.id)
        return ran

    def _transport(self, service: str) -> httpx.AsyncBaseTransport:
        sent = self._requests.setdefault(service, [])
        handler = self._handlers.get(service)

        async def answer(request: httpx.Request) -> httpx.Response:
            # The body as a server receives it, read from the stream: a body a plugin sets
            # after build_request (a streamed upload) is not in ``request.content``.
            body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
            request = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                content=body,
                extensions=request.extensions,
            )
            sent.append(request)
            if handler is None:
                raise AssertionError(
                    f"gladd.testing: a request to service {service!r} ({request.method} "
                    f"{request.url}) but no handler for it: pass services={{{service!r}: ...}}"
                )
            response = handler(request)
            if not isinstance(response, httpx.Response):
                response = await response
            return response

        return httpx.MockTransport(answer)


def _plugin_of(obj: Plugin | ModuleType | Path) -> Plugin:
    if isinstance(obj, Path):
        loaded = load_file(obj)  # as discovery imports a plugins directory's files
        if not isinstance(loaded, Plugin):
            raise TypeError(str(loaded))
        return loaded
    found = getattr(obj, "plugin", None) if isinstance(obj, ModuleType) else obj
    if not isinstance(found, Plugin):
        raise TypeError(
            "PluginTest takes Plugin objects, modules with a `plugin = Plugin(...)` or "
            f"paths of such modules, not {obj!r}"
        )
    return found


def _policies(policies: str | Policies) -> LoadedPolicies | Policies:
    if isinstance(policies, Policies):
        return policies
    return parse_policies(policies.encode(), source="PluginTest policies")
