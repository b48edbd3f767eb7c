"""Another process's commits to a SQLite file, heard through inotify: what wakes a watch.

Every commit to the file, by any process (the daemon finishing a task, storing its
progress), writes its WAL; :class:`FileWatcher` watches the database's directory for changes
to the file or its WAL (``watchfiles``, already there for the policies file) and calls
``changed`` in the event loop that started it. One thread per store object, started by its
first watch and stopped by its last, serves every watch of that store. It hears commits
it cannot attribute: ``changed`` wakes every watch, and each reads its task again (one
primary-key read). A file that keeps changing wakes them at most every
:data:`GROUPING` ``[1]`` milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import anyio.from_thread
import anyio.lowlevel

GROUPING = (20, 100)
"""Milliseconds the files must be quiet before a wake-up, and at most between wake-ups
while they keep changing: a burst of commits is one re-read."""
SETTLE = 0.2
"""Seconds after a watch begins when it wakes once anyway: a commit made while inotify was
being set up is read then, not at the waiter's next safety re-read."""


class FileWatcher:
    """Watches the files of the SQLite database at ``path`` from a thread, while started."""

    def __init__(self, path: str, changed: Callable[[], None]) -> None:
        database = Path(os.path.abspath(path))
        self._directory = database.parent
        self._names = frozenset({database.name, f"{database.name}-wal"})
        self._changed = changed
        self._stop: threading.Event | None = None

    def start(self) -> None:
        """Start watching (in the event loop that ``changed`` must run in)."""
        if self._stop is not None:
            return
        self._stop = threading.Event()
        token = anyio.lowlevel.current_token()
        name = f"gladd-watch:{next(iter(sorted(self._names)))}"
        threading.Thread(target=self._run, args=(self._stop, token), name=name, daemon=True).start()

    def stop(self) -> None:
        """Stop watching; the thread ends within a step (:data:`GROUPING`)."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop.set()

    def _run(self, stop: threading.Event, token: anyio.lowlevel.EventLoopToken) -> None:
        import watchfiles  # noqa: PLC0415 - only a waiting process needs it

        names = self._names
        step, debounce = GROUPING

        def ours(_: watchfiles.Change, path: str) -> bool:
            return Path(path).name in names

        for _ in watchfiles.watch(
            self._directory,
            watch_filter=ours,
            debounce=debounce,
            step=step,
            stop_event=stop,
            recursive=False,
            ignore_permission_denied=True,
        ):
            if stop.is_set():
                return
            # The loop is gone (closed without stopping us): nobody left to tell.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(self._changed, token=token)
