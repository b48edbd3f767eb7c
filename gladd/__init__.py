"""gladd: a resilience daemon driven by one declarative file, ``policies.toml``.

What applications and plugin authors use is exported here; everything else may change.

The exports are imported on first use (PEP 562), so importing a part of gladd — the
``gladd`` command's entry point above all — does not first import all of it: the command
must be able to handle Ctrl-C from its very first line (see :mod:`gladd.cli`).

Plugins declare their task kinds as :class:`TaskKind`. ``Kind`` is a compatibility alias of
:class:`gladd.executor.kinds.RegisteredKind`, the form the executor runs a kind in; it is
the same class, kept importable for code that registers kinds on the executor directly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gladd.client import Client, enqueue
    from gladd.errors import (
        BatchRejected,
        BatchTooLarge,
        BreakerOpen,
        BulkheadFull,
        ConfigError,
        GladdError,
        PolicyError,
        RateLimited,
        ResilienceError,
        RetriesExhausted,
        ServiceCooldown,
        StoreError,
        StoreNotFound,
        StoreUnavailable,
        SyncClientError,
        TaskRejected,
        TaskStateConflict,
        TaskTimeout,
        UnknownTask,
        WaitTimeout,
    )
    from gladd.executor.kinds import FailTask, Kind, RetryLater, Snooze, TaskContext
    from gladd.plugins import (
        Plugin,
        PluginError,
        PluginRuntime,
        ServiceRefused,
        ServiceTimeout,
        ServiceUnavailable,
        TaskKind,
        raise_for_status,
    )
    from gladd.store import Task, TaskProgress, TaskState
    from gladd.sync_client import SyncClient

from gladd.version import __version__

_HOMES = {
    "gladd.client": ("Client", "enqueue"),
    "gladd.errors": (
        "BatchRejected",
        "BatchTooLarge",
        "BreakerOpen",
        "BulkheadFull",
        "ConfigError",
        "GladdError",
        "PolicyError",
        "RateLimited",
        "ResilienceError",
        "RetriesExhausted",
        "ServiceCooldown",
        "StoreError",
        "StoreNotFound",
        "StoreUnavailable",
        "SyncClientError",
        "TaskRejected",
        "TaskStateConflict",
        "TaskTimeout",
        "UnknownTask",
        "WaitTimeout",
    ),
    "gladd.executor.kinds": ("FailTask", "Kind", "RetryLater", "Snooze", "TaskContext"),
    "gladd.plugins": (
        "Plugin",
        "PluginError",
        "PluginRuntime",
        "ServiceRefused",
        "ServiceTimeout",
        "ServiceUnavailable",
        "TaskKind",
        "raise_for_status",
    ),
    "gladd.store": ("Task", "TaskProgress", "TaskState"),
    "gladd.sync_client": ("SyncClient",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'gladd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME_OF])


__all__ = [
    "BatchRejected",
    "BatchTooLarge",
    "BreakerOpen",
    "BulkheadFull",
    "Client",
    "ConfigError",
    "FailTask",
    "GladdError",
    "Kind",
    "Plugin",
    "PluginError",
    "PluginRuntime",
    "PolicyError",
    "RateLimited",
    "ResilienceError",
    "RetriesExhausted",
    "RetryLater",
    "ServiceCooldown",
    "ServiceRefused",
    "ServiceTimeout",
    "ServiceUnavailable",
    "Snooze",
    "StoreError",
    "StoreNotFound",
    "StoreUnavailable",
    "SyncClient",
    "SyncClientError",
    "Task",
    "TaskContext",
    "TaskKind",
    "TaskProgress",
    "TaskRejected",
    "TaskState",
    "TaskStateConflict",
    "TaskTimeout",
    "UnknownTask",
    "WaitTimeout",
    "__version__",
    "enqueue",
    "raise_for_status",
]
