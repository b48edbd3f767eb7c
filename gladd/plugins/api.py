"""The plugin API: what a plugin module declares, and the helpers its handlers use.

A plugin is a Python module exposing ``plugin = Plugin(...)``::

    from pydantic import BaseModel
    from gladd.plugins import Plugin, TaskKind, raise_for_status
    from gladd import TaskContext

    class Ping(BaseModel):
        path: str = "/"

    async def ping(ctx: TaskContext, payload: Ping) -> int:
        response = await ctx.http["example"].get(ctx.settings.base_url + payload.path)
        raise_for_status(response)
        return response.status_code

    plugin = Plugin(
        name="example",
        services=("example",),          # each needs a [services.example] in policies.toml
        kinds=[TaskKind(name="example.ping", handler=ping, payload=Ping)],
        settings=ExampleSettings,       # validates [plugins.example]; optional
    )

Handlers are ``async def`` (run on the event loop) or plain ``def`` (run in a worker
thread, so they cannot block the loop). The host gives each the :class:`TaskContext`.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from gladd.executor.kinds import Handler
from gladd.plugins.errors import ServiceRefused, ServiceUnavailable
from gladd.policies.model import ServiceBinding
from gladd.resilience.classify import status_class
from gladd.resilience.retry_after import parse_retry_after

if TYPE_CHECKING:
    from loguru import Logger

ANY_SERVICE = "*"
"""Put in ``services`` to get a client for every ``[services.*]`` (the ``http`` plugin)."""

PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
KIND_VERB = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
SERVICE_EXTENSION = "gladd_service"
"""The response extension naming the service a host client sent the request to."""

_MAX_DETAIL = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueContext:
    """What a kind's ``check`` sees at enqueue: the policies served at that moment."""

    services: Mapping[str, ServiceBinding]
    """The ``[services.*]`` bindings the plugin may call (all of them for ANY_SERVICE)."""
    settings: Any
    """The plugin's validated ``[plugins.NAME]`` (None without a settings model)."""


EnqueueCheck = Callable[[EnqueueContext, Any], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskKind:
    """One task kind a plugin handles: ``PLUGIN.verb``, its handler and payload schema."""

    name: str
    handler: Handler
    payload: type[BaseModel] | None = None
    """Validates payloads at enqueue, so a bad one is refused before it is stored."""
    check: EnqueueCheck | None = None
    """``check(ctx, payload)`` with the parsed payload: raise ValueError saying why it
    cannot run under the current policies and how to fix that (refused with 422 / exit 65
    before anything is stored). It runs in the daemon: at an enqueue through it, and before
    each attempt (an application's client, which imports no plugin, leaves it to the
    attempt: the task is then dead at once with the message). Keep it quick and free of
    I/O."""
    description: str = ""

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise TypeError(f"task kind {self.name}: handler must be callable")
        if self.payload is not None and not (
            isinstance(self.payload, type) and issubclass(self.payload, BaseModel)
        ):
            raise TypeError(f"task kind {self.name}: payload must be a pydantic model class")
        if self.check is not None and not callable(self.check):
            raise TypeError(f"task kind {self.name}: check must be callable")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginRuntime:
    """What start and stop hooks get: the plugin's long-lived view of the host."""

    name: str
    http: Mapping[str, httpx.AsyncClient]
    settings: Any
    logger: Logger
    state: dict[str, Any]
    """The plugin's own objects (token caches, locks); handlers see it as ``ctx.state``."""
    data_dir: Path
    """``STATE_DIR/plugins/NAME``: a directory the plugin may keep files in across runs."""


Hook = Callable[[PluginRuntime], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plugin:
    """A plugin's declaration: its name, the services it calls and the kinds it handles."""

    name: str
    kinds: Sequence[TaskKind]
    services: tuple[str, ...] = ()
    """Service names; each must be a ``[services.NAME]`` of policies.toml."""
    settings: type[BaseModel] | None = None
    """Validates ``[plugins.NAME]``; secrets are ``SecretStr`` fields."""
    start: Hook | None = None
    stop: Hook | None = None
    description: str = ""
    source: str = field(default="", compare=False)
    """Where the plugin was loaded from (set by discovery)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PLUGIN_NAME.match(self.name):
            raise ValueError(
                f"plugin name {self.name!r} must be lower case letters, digits and _, "
                "starting with a letter"
            )
        if isinstance(self.services, str):
            raise TypeError(f"plugin {self.name}: services must be a tuple of names, not a str")
        for kind in self.kinds:
            if not isinstance(kind, TaskKind):
                raise TypeError(f"plugin {self.name}: kinds must be TaskKind objects")
        for hook, what in ((self.start, "start"), (self.stop, "stop")):
            if hook is not None and not inspect.iscoroutinefunction(hook):
                raise TypeError(f"plugin {self.name}: the {what} hook must be an async function")
        if self.settings is not None and not (
            isinstance(self.settings, type) and issubclass(self.settings, BaseModel)
        ):
            raise TypeError(f"plugin {self.name}: settings must be a pydantic model class")

    @property
    def any_service(self) -> bool:
        return ANY_SERVICE in self.services


def service_of(response: httpx.Response) -> str:
    """The service a host client sent ``response``'s request to (``?`` if not a host's)."""
    return str(response.extensions.get(SERVICE_EXTENSION, "?"))


def error_detail(response: httpx.Response) -> str:
    """The error message an API put in its body: ``message`` (GitHub), ``error.message``
    (Cloudinary), ``error`` (Hugging Face), else the start of the text. Reads the body."""
    try:
        body: Any = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    found: Any = None
    if isinstance(body, dict):
        found = body.get("message") or body.get("error_description") or body.get("error")
        if isinstance(found, dict):
            found = found.get("message")
    if not found:
        found = response.text.strip() or response.reason_phrase
    text = " ".join(str(found).split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def raise_for_status(
    response: httpx.Response,
    *,
    expect: Sequence[int] = (),
    auth_hint: str | None = None,
) -> None:
    """Return if ``response`` is a success (or in ``expect``); else raise what fits.

    A retryable status (5xx but 501/505, 408, 429) raises :class:`ServiceUnavailable`;
    anything else :class:`ServiceRefused` (the task goes dead) with the API's own message;
    for 401 and 403 followed by ``auth_hint`` (default: "check the credentials in
    [plugins.PLUGIN]").
    The body must have been read (it is, unless the request was streamed).
    """
    status = response.status_code
    if status in expect or (not expect and 200 <= status < 400):
        return
    service = service_of(response)
    detail = f"answered {status} {error_detail(response)}"
    if status_class(status) is not None:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise ServiceUnavailable(
            service, detail, response=response, status=status, retry_after=retry_after
        )
    hint = None
    if status in (401, 403):
        hint = auth_hint or "check the credentials in [plugins.{plugin}]"
    if expect and 200 <= status < 400:
        detail += f" (expected {', '.join(map(str, expect))})"
    raise ServiceRefused(service, detail, status=status, hint=hint)
