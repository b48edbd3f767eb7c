"""gladd: a resilience daemon driven by one declarative file, ``policies.toml``.

What applications and plugin authors use is exported here; everything else may change.
"""

from gladd.client import Client, enqueue
from gladd.errors import (
    BreakerOpen,
    ConfigError,
    GladdError,
    PolicyError,
    ResilienceError,
    RetriesExhausted,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    TaskRejected,
    TaskStateConflict,
    TaskTimeout,
    UnknownTask,
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
from gladd.store import Task, TaskState

__version__ = "0.1.0"

__all__ = [
    "BreakerOpen",
    "Client",
    "ConfigError",
    "FailTask",
    "GladdError",
    "Kind",
    "Plugin",
    "PluginError",
    "PluginRuntime",
    "PolicyError",
    "ResilienceError",
    "RetriesExhausted",
    "RetryLater",
    "ServiceRefused",
    "ServiceTimeout",
    "ServiceUnavailable",
    "Snooze",
    "StoreError",
    "StoreNotFound",
    "StoreUnavailable",
    "Task",
    "TaskContext",
    "TaskKind",
    "TaskRejected",
    "TaskState",
    "TaskStateConflict",
    "TaskTimeout",
    "UnknownTask",
    "__version__",
    "enqueue",
    "raise_for_status",
]
