"""The systemd notify protocol, spoken directly over an ``AF_UNIX`` datagram socket.

``sd_notify(3)`` is one datagram of newline-separated ``KEY=VALUE`` lines sent to the path in
``$NOTIFY_SOCKET``; linking libsystemd or pulling in a package for that is not worth it. The
notifier is the daemon's one seam to the service manager: outside systemd (tests, containers,
a terminal) it is disabled and every call is a cheap no-op returning ``False``.

Nothing here raises on I/O: a service manager that went away must never take the daemon down
with it, so send failures are reported as ``False`` and logged once at debug level.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
from loguru import logger

__all__ = ["Notifier", "run_watchdog", "watchdog_interval"]


def _socket_address(value: str) -> str | None:
    """Translate ``$NOTIFY_SOCKET`` into a ``socket.sendto`` address, or None if unusable.

    sd_notify(3) accepts an absolute path or ``@name`` for the Linux abstract namespace (the
    ``@`` stands for the leading NUL byte). ``vsock:`` addresses (systemd 254, for VMs) and
    anything else are not supported, which disables notification rather than failing.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


class Notifier:
    """Sends state changes to systemd; a context manager that closes its socket on exit.

    The socket is created on the first send and reused, so a daemon that pings the watchdog
    every few seconds does not churn file descriptors.
    """

    __slots__ = ("_address", "_failure_logged", "_socket")

    def __init__(self, address: str | None) -> None:
        self._address = address
        self._socket: socket.socket | None = None
        self._failure_logged = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Build the notifier systemd asked for, or a disabled one outside systemd."""
        env = os.environ if environ is None else environ
        value = env.get("NOTIFY_SOCKET", "")
        address = _socket_address(value) if value else None
        if value and address is None:
            logger.debug("NOTIFY_SOCKET={!r} is not supported; notifications disabled", value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        """Whether a notify socket is configured (not whether systemd is still listening)."""
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one datagram; True only if the kernel accepted it.

        Raises ValueError for a malformed field even when disabled: a field with a newline would
        smuggle in another assignment, and catching that in tests outside systemd matters.
        """
        _check_fields(fields)
        if self._address is None:
            return False
        payload = "\n".join(fields).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(payload, self._address)
        except OSError as error:
            self._log_failure(error)
            return False
        self._failure_logged = False
        return True

    def _log_failure(self, error: OSError) -> None:
        """Log the first failure of a run of failures, so a dead socket cannot flood the log."""
        if not self._failure_logged:
            self._failure_logged = True
            logger.debug("sd_notify to {!r} failed: {}", self._address, error)

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up (or a reload) finished; ``Type=notify`` waits for this."""
        return self.send("READY=1", *_status_fields(status))

    def reloading(self) -> bool:
        """Announce a reload; send :meth:`ready` when it is done.

        ``Type=notify-reload`` (systemd 253) requires ``MONOTONIC_USEC`` in the same datagram
        so systemd can tell this reload apart from an earlier one (systemd.service(5)).
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        """Announce shutdown so systemd does not mistake the drain for a hang."""
        return self.send("STOPPING=1", *_status_fields(status))

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status``."""
        return self.send(*_status_fields(text))

    def watchdog(self) -> bool:
        """Ping the watchdog armed by ``WatchdogSec=``."""
        return self.send("WATCHDOG=1")

    def mainpid(self, pid: int) -> bool:
        """Tell systemd which process is the service's main process."""
        return self.send(f"MAINPID={pid}")

    def close(self) -> None:
        """Close the socket; a later send reopens it."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Notifier(address={self._address!r})"


def _check_fields(fields: tuple[str, ...]) -> None:
    if not fields:
        raise ValueError("sd_notify needs at least one KEY=VALUE field")
    for field in fields:
        key, sep, _ = field.partition("=")
        if not key or not sep or "\n" in field:
            raise ValueError(f"not a single-line KEY=VALUE notify field: {field!r}")


def _status_fields(status: str | None) -> tuple[str, ...]:
    """``STATUS=`` is one line; flatten multi-line text (e.g. an exception) instead of failing."""
    if status is None:
        return ()
    return ("STATUS=" + " ".join(status.splitlines()),)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings, or None when the watchdog is not armed for us.

    Like sd_watchdog_enabled(3): ``WATCHDOG_USEC`` is the timeout and ``WATCHDOG_PID``, when
    set, names the process it is meant for (a child that inherited the environment must not
    ping). Pinging at half the timeout is what the man page recommends.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    return usec / 2 / 1_000_000


async def run_watchdog(
    notifier: Notifier,
    interval: float,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Ping the watchdog every ``interval`` seconds until cancelled.

    The pings come from the event loop on purpose: a loop blocked by sync code stops pinging,
    and systemd restarts a daemon that only looks alive.
    """
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval!r}")
    task_status.started()
    while True:
        notifier.watchdog()
        await anyio.sleep(interval)
