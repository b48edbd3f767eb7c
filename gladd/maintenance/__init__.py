"""Services that keep the task store in shape, beside the work itself.

Each is ``async def run(self, *, task_status)``, started by the executor's task group; each
reads the store's clock from ``now`` and waits through an injectable :class:`Clock`.

- :mod:`.rescuer` — takes back the tasks of workers presumed dead (and, at start, those a
  previous process on a single-process store left running);
- :mod:`.cleaner` — deletes finished tasks older than ``executor.retention``;
- next: the schedule enqueuer (recurring tasks) belongs here too.

Below the executor: nothing here imports :mod:`gladd.executor`.
"""
