"""The durable task store: one interface (:mod:`.base`), implementations listed in
:mod:`.registry` and picked by URL (:mod:`.factory`, :mod:`.configure`).

The registry is imported with the package: the stores' driver errors must be known to the
resilience classifier wherever a store may raise them, however the store was made.
"""

from gladd.store import registry as registry
from gladd.store.base import (
    Cancelled,
    Enqueued,
    Failed,
    GatedClaim,
    MigrationStatus,
    NewTask,
    Outcome,
    ProgressReport,
    Released,
    RescueReport,
    ScheduleState,
    Store,
    Succeeded,
    Task,
    TaskError,
    TaskProgress,
    TaskState,
    TaskWatch,
    TimelineEntry,
)
from gladd.store.catalogue import KindSpec, PublishedKind

__all__ = [
    "Cancelled",
    "Enqueued",
    "Failed",
    "GatedClaim",
    "KindSpec",
    "MigrationStatus",
    "NewTask",
    "Outcome",
    "ProgressReport",
    "PublishedKind",
    "Released",
    "RescueReport",
    "ScheduleState",
    "Store",
    "Succeeded",
    "Task",
    "TaskError",
    "TaskProgress",
    "TaskState",
    "TaskWatch",
    "TimelineEntry",
]
