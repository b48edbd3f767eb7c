"""Reading a policies file, bounded in kind, size and time.

A FIFO at the policies path blocks ``read()`` until a writer comes (for ever, if none does),
a symlink to ``/dev/zero`` never reaches end of file, and a network or FUSE file system
can stall a read of a perfectly regular file. Each of those used to hang or exhaust the
daemon, so every read of a policies file (``gladd check``, ``gladd run``, every reload)
goes through :func:`read_policies_file`:

- only a regular file is read: it is ``stat``-ed before it is opened (opening some devices
  has side effects), opened with ``O_NONBLOCK`` (so a FIFO swapped in between cannot block
  the open) and ``fstat``-ed again once open;
- at most :data:`MAX_POLICIES_BYTES` (+1, to tell "exactly the limit" from "over it");
- in a daemon thread given :data:`READ_TIMEOUT`: a read still stuck then is abandoned
  (the thread cannot be interrupted, but it holds nothing the daemon needs, and a daemon
  thread never delays exit), and later reads of the same file are refused at once while
  it stays stuck, rather than piling up threads.

Refusals are :class:`PolicyError` naming the file and what it is; the operating system's
own errors (not found, permission denied) are raised as ``OSError`` for the caller to word.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from gladd.durations import format_duration
from gladd.errors import PolicyError, Problem

MAX_POLICIES_BYTES = 4 * 1024 * 1024
"""The largest policies file gladd reads: 4 MiB (the shipped one is about 10 KiB)."""

READ_TIMEOUT = 5.0
"""Seconds a read of the policies file may take before it is abandoned."""

_CHUNK = 1 << 16

Reader = Callable[[Path, int], bytes]
"""Reads at most ``limit`` + 1 bytes of a path (the default: :func:`read_regular_file`)."""

_stuck: dict[str, tuple[threading.Thread, float]] = {}
"""Reads that did not return in time, by path: the thread and when it started."""
_stuck_lock = threading.Lock()


def read_policies_file(
    path: Path,
    *,
    limit: int = MAX_POLICIES_BYTES,
    timeout: float = READ_TIMEOUT,
    read: Reader | None = None,
) -> bytes:
    """The bytes of the regular file ``path``; :class:`PolicyError` for anything else."""
    key = str(path)
    with _stuck_lock:
        earlier = _stuck.get(key)
        if earlier is not None and earlier[0].is_alive():
            since = format_duration(round(time.monotonic() - earlier[1], 1))
            raise _refused(
                path,
                f"an earlier read of it has not returned for {since}; is its file system stuck?",
            )
        _stuck.pop(key, None)
    reader = read or read_regular_file
    outcome: list[bytes | BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(reader(path, limit))
        except BaseException as exc:  # handed to the waiting caller, whatever it is
            outcome.append(exc)
        finally:
            done.set()

    started = time.monotonic()
    thread = threading.Thread(target=work, name=f"gladd read {path.name}", daemon=True)
    thread.start()
    if not done.wait(timeout):
        with _stuck_lock:
            _stuck[key] = (thread, started)
        raise _refused(
            path,
            f"could not be read within {format_duration(timeout)} (a stuck network or FUSE "
            "file system?); the read was abandoned",
        )
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    return result


async def read_policies_file_async(
    path: Path,
    *,
    limit: int = MAX_POLICIES_BYTES,
    timeout: float = READ_TIMEOUT,
    read: Reader | None = None,
) -> bytes:
    """:func:`read_policies_file` off the event loop; cancelling it (a shutdown) returns at
    once, leaving the bounded wait to its worker thread."""

    def blocking() -> bytes:
        return read_policies_file(path, limit=limit, timeout=timeout, read=read)

    return await anyio.to_thread.run_sync(blocking, abandon_on_cancel=True)


def read_regular_file(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path`` if it is a regular file; refuse anything else."""
    _check(path, os.stat(path), limit)  # before opening: opening a device may do something
    fd = _open(path)
    try:
        _check(path, os.fstat(fd), limit)  # what was opened, should the path have changed
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise _refused(path, f"grew past the {_size(limit)} limit for a policies file while read")
    return b"".join(chunks)


def _open(path: Path) -> int:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    return os.open(path, flags)


def _check(path: Path, st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        what = _kind(st.st_mode)
        target = f" (a symlink to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise _refused(
            path, f"is {what}{target}, not a regular file; put the policies file itself here"
        )
    if st.st_size > limit:
        raise _refused(
            path,
            f"is {_size(st.st_size)}, over the {_size(limit)} limit for a policies file; "
            "is this the right file?",
        )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    if size < 1024**3:
        mib = size / 1024**2
        return f"{mib:.0f} MiB" if mib.is_integer() else f"{mib:.1f} MiB"
    return f"{size / 1024**3:.1f} GiB"


def _refused(path: Path, message: str) -> PolicyError:
    return PolicyError(str(path), [Problem(path="", message=message)])
