"""Task kinds: the handler that runs each kind, its payload schema, and the handler API.

A handler is ``async def handler(ctx: TaskContext, payload) -> result`` (or a plain
function, run in a worker thread so it cannot block the event loop). ``payload`` is the
kind's pydantic model when it declares one, else the decoded JSON. The result must be
JSON-serialisable (a pydantic model is dumped for you).

A handler steers what happens next by raising:

- :class:`Snooze` — not now: run again after a delay, without spending an attempt;
- :class:`RetryLater` — this attempt failed: retry after exactly this delay (attempts permitting);
- :class:`FailTask` — this can never succeed: dead at once, no retry.

Any other exception is judged by the kind's retry policy: transient errors (connect,
timeout, reset, 5xx, 408, 429, named types) are retried with backoff; anything else, such
as a programming error, goes straight to dead with its traceback summary in the history.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gladd.errors import TaskRejected
from gladd.executor.progress import checked_fraction
from gladd.policies.model import Policies, ServiceBinding
from gladd.store import Task

if TYPE_CHECKING:
    from loguru import Logger

JSON = Any


class Snooze(Exception):
    """Run this task again after ``seconds`` without spending an attempt."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"snoozed for {seconds:g}s")
        self.seconds = max(0.0, seconds)


class RetryLater(Exception):
    """This attempt failed; retry after exactly ``seconds`` if attempts remain."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"retry requested in {seconds:g}s")
        self.seconds = max(0.0, seconds)


class FailTask(Exception):
    """This task can never succeed: mark it dead without retrying."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext:
    """What a handler gets besides its payload.

    Plugin handlers also get (from :class:`gladd.plugins.PluginHost`): ``http``, one shared
    resilient ``httpx.AsyncClient`` per service the plugin declares, and ``services``, those
    services' ``[services.NAME]`` bindings (their ``hosts``...); ``settings``, the
    plugin's validated ``[plugins.NAME]`` table; ``scratch``, a directory removed after the
    attempt; and ``state``, the plugin's own long-lived objects (set up by its start hook).
    """

    task: Task
    logger: Logger
    enqueue: Callable[..., Awaitable[int]]
    plugin: str = "gladd"
    http: Mapping[str, httpx.AsyncClient] = field(default_factory=dict)
    services: Mapping[str, ServiceBinding] = field(default_factory=dict)
    settings: Any = None
    scratch: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)
    progress_to: Callable[[float, str | None], None] | None = None
    """Where :meth:`progress` reports go (the executor sets it); None: checked, dropped."""

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Say how far the task has got: ``fraction`` done, from 0 to 1, and what it is
        doing (``ctx.progress(i / total, f"row {i} of {total}")``). Cheap to call as
        often as you like, from async and plain handlers alike: the store gets the latest
        once a second (and the last when the attempt ends); ``gladd tasks show``, ``gladd
        tasks wait``, ``Client.wait`` and ``GET /tasks/{id}`` show it. A fraction that is
        not a number from 0 to 1 raises TypeError or ValueError (a bug worth seeing)."""
        value = checked_fraction(fraction, message)
        if self.progress_to is not None:
            self.progress_to(value, message)

    @property
    def id(self) -> int:
        return self.task.id

    @property
    def attempt(self) -> int:
        return self.task.attempt


Handler = Callable[[TaskContext, Any], Any]
RunnableCheck = Callable[[Any, Policies], None]
"""Given a parsed payload and the policies served now, raises ValueError saying why a task
could not run (a plugin's :attr:`~gladd.plugins.TaskKind.check`)."""
Enqueue = Callable[..., Awaitable[int]]
ContextFactory = Callable[[Task, "Logger", Enqueue], AbstractAsyncContextManager[TaskContext]]
"""Builds the context of one attempt and cleans up after it (the plugin host's seam)."""


@asynccontextmanager
async def basic_context(task: Task, logger: Logger, enqueue: Enqueue) -> AsyncIterator[TaskContext]:
    """The context of kinds that need no resources: the task, a logger, enqueue."""
    yield TaskContext(task=task, logger=logger, enqueue=enqueue)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredKind:
    """A task kind as the executor runs it: its handler, payload model and enqueue check.

    Plugins declare theirs as :class:`gladd.plugins.TaskKind`; the plugin boundary
    (:func:`gladd.plugins.plugin_kinds`) registers each as one of these, its handler wrapped
    so errors name the plugin. The built-ins are registered directly.
    """

    name: str
    handler: Handler
    payload_model: type[BaseModel] | None = None
    plugin: str = "gladd"
    services: tuple[str, ...] = ()
    """The services its plugin declares: a cooldown or pause of one holds the kind back."""
    runnable: RunnableCheck | None = None
    """Refuses at enqueue a valid payload the policies already doom (e.g. no service for
    its URL), so it is not stored only to die on its first attempt."""
    description: str = ""
    validator: Callable[[JSON], None] | None = None
    """Checks a payload without its model, raising TaskRejected: how a client validates a
    kind it knows only from the daemon's published catalogue (:mod:`.catalogue`)."""

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def check(self, payload: Any, policies: Policies) -> None:
        """Raise TaskRejected when the parsed ``payload`` cannot run under ``policies``."""
        if self.runnable is None:
            return
        try:
            self.runnable(payload, policies)
        except ValueError as exc:
            raise TaskRejected(f"{self.name} task refused: {exc}") from None
        except Exception as exc:  # a bug in the plugin: refuse the task, name the bug
            logger.opt(exception=exc).error(
                "plugin {}: the enqueue check of kind {} raised {}; the task was refused",
                self.plugin,
                self.name,
                type(exc).__name__,
            )
            raise TaskRejected(
                f"{self.name} task refused: plugin {self.plugin}'s enqueue check failed "
                f"({type(exc).__name__}: {exc}); nothing was stored. This is a bug in the "
                "plugin (its check must raise ValueError to refuse a task); its log has the "
                "traceback"
            ) from None

    def parse(self, payload: JSON) -> Any:
        """The payload as the handler receives it; raises TaskRejected when invalid."""
        if self.payload_model is None:
            if self.validator is not None:
                self.validator(payload)
            return payload
        try:
            return self.payload_model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
                for err in exc.errors()
            )
            raise TaskRejected(f"payload for {self.name} is invalid: {problems}") from None


Kind = RegisteredKind
"""The former name of :class:`RegisteredKind`, exported as ``gladd.Kind``: an alias kept so
code written against it keeps working, not a second class. New code says RegisteredKind."""


class KindRegistry:
    """Every kind this node can run, by name."""

    def __init__(self, kinds: Iterable[RegisteredKind] = ()) -> None:
        self._kinds: dict[str, RegisteredKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: RegisteredKind) -> None:
        existing = self._kinds.get(kind.name)
        if existing is not None:
            raise TaskRejected(
                f"task kind {kind.name} is declared twice (by {existing.plugin} and {kind.plugin})"
            )
        self._kinds[kind.name] = kind

    def get(self, name: str) -> RegisteredKind | None:
        return self._kinds.get(name)

    def require(self, name: str) -> RegisteredKind:
        kind = self._kinds.get(name)
        if kind is None:
            known = ", ".join(sorted(self._kinds)) or "none"
            raise TaskRejected(f"unknown task kind {name!r} (known kinds: {known})")
        return kind

    def names(self) -> list[str]:
        return sorted(self._kinds)


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(1.0, ge=0, le=86400)


async def _noop(ctx: TaskContext, payload: JSON) -> None:
    return None


async def _sleep(ctx: TaskContext, payload: SleepPayload) -> dict[str, float]:
    await anyio.sleep(payload.seconds)
    return {"slept": payload.seconds}


def builtin_kinds() -> list[RegisteredKind]:
    """``gladd.noop`` and ``gladd.sleep``: for smoke tests and benchmarks."""
    return [
        RegisteredKind(
            name="gladd.noop", handler=_noop, description="do nothing (smoke tests, benchmarks)"
        ),
        RegisteredKind(
            name="gladd.sleep",
            handler=_sleep,
            payload_model=SleepPayload,
            description="sleep for `seconds` (smoke tests, benchmarks)",
        ),
    ]
