"""The Python API for applications: hand tasks to gladd from your own code.

::

    import gladd

    task_id = await gladd.enqueue("gladd.sleep", {"seconds": 1.5})

    async with gladd.Client("postgresql://app@db/gladd") as client:
        await client.enqueue("http.request", {...}, delay=30, unique_key="order-17")

The client writes to the store directly (the daemon need not be running) and imports no
plugin to do it: it checks kinds and payloads against the built-in kinds and the catalogue
of kinds and payload JSON Schemas the daemon published in the store
(:mod:`gladd.executor.catalogue`), or, given ``kinds=``, against that registry with full
pydantic validation. Nothing refused is stored. Without a
URL it finds the store as the CLI does (``GLADD_*``, the env file — the service's
``/etc/gladd/gladd.env`` on its host —, the state directory), and it never creates one: a
store that is not there raises :class:`~gladd.errors.StoreNotFound` naming where it looked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gladd import tracing
from gladd.executor.catalogue import CatalogueKinds
from gladd.executor.kinds import KindRegistry
from gladd.executor.service import TaskService
from gladd.policies import Policies, load_policies
from gladd.settings import load_settings
from gladd.store import Store, Task
from gladd.store.configure import configured_store


class Client:
    """A connection to gladd's task store, configured like the daemon (flags aside).
    The store must exist: the daemon (``gladd run``) or ``gladd db migrate`` creates it."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        policies: Path | None = None,
        kinds: KindRegistry | None = None,
        env_file: Path | None = None,
    ) -> None:
        settings = load_settings(env_file, database_url=database_url, policies=policies)
        if settings.otel and tracing.current() is None:
            # A library's part: spans through the API, into the provider the application
            # set up (none set up: OpenTelemetry's no-op one, the caller's context kept).
            tracing.enable(store_spans=settings.otel_store_spans)
        self._policies: Policies = load_policies(settings.policies_path).policies
        # It never waits for work: no notification of each of its own inserts comes back.
        self._store: Store = configured_store(
            settings.store_url, self._policies, waits_for_work=False
        )
        # Without kinds=, the daemon's published catalogue: no plugin is imported here.
        self._catalogue: CatalogueKinds | None = None
        if kinds is None:
            kinds = self._catalogue = CatalogueKinds(self._store)
        self._service = TaskService(self._store, kinds, lambda: self._policies)

    async def __aenter__(self) -> Self:
        await self._store.open(create=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._store.close()

    async def enqueue(
        self,
        kind: str,
        payload: Any = None,
        *,
        delay: float | str = 0.0,
        priority: int | None = None,
        unique_key: str | None = None,
        timeout: float | str | None = None,
    ) -> int:
        """Store a task; returns its id (the existing task's id when ``unique_key`` matches
        an unfinished one). ``delay`` and ``timeout`` are seconds or text like ``"30s"``.
        Raises TaskRejected for an unknown kind, an invalid payload or duration."""
        if self._catalogue is not None:
            await self._catalogue.refresh_for([kind])
        enqueued = await self._service.enqueue(
            kind, payload, delay=delay, priority=priority, unique_key=unique_key, timeout=timeout
        )
        return enqueued.id

    async def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[int]:
        """Store a batch of tasks in one transaction; their ids in item order. Each item
        has :meth:`enqueue`'s arguments as keys (``kind`` required; ``delay`` and ``timeout``
        in seconds). Every item is checked first: any refused raises
        :class:`~gladd.errors.BatchRejected` listing each refused item, and nothing is
        stored; over 10,000 items raise :class:`~gladd.errors.BatchTooLarge`."""
        batch = list(items)
        if self._catalogue is not None:
            await self._catalogue.refresh_for(
                {k for i in batch if isinstance(i, Mapping) and isinstance(k := i.get("kind"), str)}
            )
        enqueued = await self._service.enqueue_many(batch)
        return [e.id for e in enqueued]

    async def get(self, task_id: int) -> Task:
        return await self._service.get(task_id)

    async def wait(
        self,
        task_id: int,
        *,
        timeout: float | str | None = None,
        on_change: Callable[[Task], object] | None = None,
    ) -> Task:
        """The task once it has finished — succeeded (its ``result``), dead (its
        ``errors``, the last one why) or cancelled —, woken by the store as it finishes
        (NOTIFY on PostgreSQL, the database file changing on SQLite), not by polling.
        ``timeout`` is seconds or text like ``"30s"`` (None: as long as it takes; 0: look
        once). ``on_change(task)`` hears the unfinished task each time it reads differently
        (progress, a new attempt, an error). Raises UnknownTask for no such task,
        :class:`~gladd.errors.WaitTimeout` (with ``.task`` as last read) once ``timeout``
        has passed, ValueError for a bad ``timeout``. The task goes on either way."""
        return await self._service.wait(task_id, timeout=timeout, on_change=on_change)


async def enqueue(
    kind: str,
    payload: Any = None,
    *,
    database_url: str | None = None,
    delay: float | str = 0.0,
    priority: int | None = None,
    unique_key: str | None = None,
    timeout: float | str | None = None,
) -> int:
    """One task, one connection: for scripts. Long-lived applications keep a Client."""
    async with Client(database_url) as client:
        return await client.enqueue(
            kind, payload, delay=delay, priority=priority, unique_key=unique_key, timeout=timeout
        )
