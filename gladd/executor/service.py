"""Operating on tasks: enqueue, inspect, cancel, retry, purge — shared by the CLI, the admin
API and the Python API so each answers the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from gladd.errors import TaskRejected, UnknownTask
from gladd.executor.decide import new_task
from gladd.executor.kinds import KindRegistry
from gladd.executor.runner import utcnow
from gladd.policies import Policies
from gladd.store import Enqueued, Store, Task, TaskState
from gladd.store.base import FINISHED_STATES

MAX_LIST = 1000


class TaskService:
    def __init__(
        self,
        store: Store,
        kinds: KindRegistry,
        policies: Callable[[], Policies],
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.policies = policies
        self.now = now

    async def enqueue(
        self,
        kind: str,
        payload: Any = None,
        *,
        delay: float = 0.0,
        priority: int | None = None,
        unique_key: str | None = None,
        timeout: float | None = None,
    ) -> Enqueued:
        """Validate and store a task; raises TaskRejected before storing anything."""
        handler = self.kinds.require(kind)
        payload = {} if payload is None else payload
        handler.parse(payload)
        if delay < 0:
            raise TaskRejected(f"delay must be ≥ 0 (got {delay:g}s)")
        if priority is not None and not -1000 <= priority <= 1000:
            raise TaskRejected(f"priority must be between -1000 and 1000 (got {priority})")
        if timeout is not None and timeout <= 0:
            raise TaskRejected(f"timeout must be > 0 (got {timeout:g}s)")
        now = self.now()
        spec = new_task(
            self.policies(),
            kind=kind,
            payload=payload,
            run_at=now + timedelta(seconds=delay),
            priority=priority,
            unique_key=unique_key,
            timeout=timeout,
        )
        return await self.store.enqueue(spec, now=now)

    async def get(self, task_id: int) -> Task:
        task = await self.store.get(task_id)
        if task is None:
            raise UnknownTask(f"no task with id {task_id}")
        return task

    async def list(
        self, *, state: str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[Task]:
        return await self.store.list(
            state=parse_state(state), kind=kind, limit=max(1, min(limit, MAX_LIST))
        )

    async def cancel(self, task_id: int) -> Task:
        task = await self.store.cancel(task_id, now=self.now())
        if task is None:
            raise UnknownTask(f"no task with id {task_id}")
        return task

    async def retry(self, task_id: int) -> Task:
        task = await self.store.retry(task_id, now=self.now())
        if task is None:
            raise UnknownTask(f"no task with id {task_id}")
        return task

    async def purge(
        self,
        *,
        older_than: float,
        states: Collection[TaskState] = FINISHED_STATES,
        dry_run: bool = False,
    ) -> int:
        """Delete the tasks in ``states`` finished longer than ``older_than`` seconds ago
        (with ``dry_run``, only count them); how many."""
        before = self.now() - timedelta(seconds=older_than)
        if dry_run:
            return await self.store.count_purgeable(finished_before=before, states=states)
        return await self.store.purge(finished_before=before, states=states)


def parse_state(state: str | None) -> TaskState | None:
    if state is None or state == "":
        return None
    try:
        return TaskState(state)
    except ValueError:
        known = ", ".join(s.value for s in TaskState)
        raise TaskRejected(f"unknown task state {state!r} (states: {known})") from None


def task_json(task: Task) -> dict[str, Any]:
    """A task as the CLI's ``--json`` and the admin API show it."""
    return {
        "id": task.id,
        "kind": task.kind,
        "state": task.state.value,
        "payload": task.payload,
        "priority": task.priority,
        "run_at": task.run_at.isoformat(),
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "timeout": task.timeout,
        "unique_key": task.unique_key,
        "owner": task.owner,
        "token": task.token,
        "rescues": task.rescues,
        "cancel_requested": task.cancel_requested,
        "result": task.result,
        "errors": [
            {"type": e.type, "message": e.message, "attempt": e.attempt, "at": e.at.isoformat()}
            for e in task.errors
        ],
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
    }
