"""The durable task store: pick an implementation by URL (see :func:`open_store`)."""

from gladd.store.base import (
    Cancelled,
    Enqueued,
    Failed,
    MigrationStatus,
    NewTask,
    Outcome,
    Released,
    RescueReport,
    Store,
    Succeeded,
    Task,
    TaskError,
    TaskState,
)

__all__ = [
    "Cancelled",
    "Enqueued",
    "Failed",
    "MigrationStatus",
    "NewTask",
    "Outcome",
    "Released",
    "RescueReport",
    "Store",
    "Succeeded",
    "Task",
    "TaskError",
    "TaskState",
]
