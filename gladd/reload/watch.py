"""Watching ``policies.toml`` the way editors and deployments actually change it.

The *directory* is watched, not the file: an atomic save (write a temporary file, rename
it over the old one — vim, ``sed -i``, most config tools), ``mv`` into place, delete and
re-create, and a Kubernetes ConfigMap update (the ``..data`` symlink re-pointed) all
replace the file's inode, which a watch on the file itself would lose. Events are only
hints: the reloader compares content hashes, so touches and unrelated events cost one
read and nothing else. A periodic check covers file systems that send no events (NFS,
some container mounts).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import watchfiles
from anyio.abc import TaskStatus
from loguru import logger

SETTLE_MS = 50
"""Events are grouped until the directory is quiet this long, so a half-written file is
read once it is whole."""

WAKE_MS = 500
"""How often the watch thread wakes when nothing happens (to notice it was stopped)."""

CHECK_INTERVAL = 5.0
"""Seconds between safety-net checks of the content hash."""


def _relevant(name: str, target: str) -> bool:
    # The file itself, or Kubernetes' atomic-writer entries ("..data", "..2026_11_30...").
    return name == target or name.startswith("..")


async def watch_policies(
    path: Path,
    request: Callable[[str], object],
    *,
    check_interval: float = CHECK_INTERVAL,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``request("file")`` when the file may have changed, ``request("poll")`` every
    ``check_interval`` seconds; runs until cancelled."""
    directory = _directory_of(path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_poll, request, check_interval)
        tg.start_soon(_watch, directory, path.name, request)
        task_status.started()


def _directory_of(path: Path) -> Path:
    return path.absolute().parent


async def _poll(request: Callable[[str], object], interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        request("poll")


async def _watch(directory: Path, name: str, request: Callable[[str], object]) -> None:
    def interesting(_: watchfiles.Change, changed: str) -> bool:
        return _relevant(Path(changed).name, name)

    logger.info("watching {} for changes to {}", directory, name)
    watching = False
    async for changes in watchfiles.awatch(
        directory,
        watch_filter=interesting,
        step=SETTLE_MS,
        recursive=False,
        yield_on_timeout=True,
        rust_timeout=WAKE_MS,
    ):
        if changes:
            request("file")
        elif not watching:
            # The first quiet wake-up proves the watch is in place: catch up on any edit
            # made between start-up and now.
            request("poll")
        watching = True
