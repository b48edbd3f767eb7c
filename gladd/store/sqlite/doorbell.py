"""A doorbell between processes that share one SQLite file.

The daemon's store waits for work; a CLI or an application enqueues into the same file
through a store of its own. After that commit the enqueuing store rings: one datagram to
the waiting store, which claims at once instead of at its next idle check.

The bell is an abstract Unix datagram socket (Linux) named after the database file's real
path: no file to create or clean up, gone with its process, one bell per database. The
first store that waits for work binds it; any other store on that file (a second daemon)
keeps to the idle check. A ring nobody hears, or one that meets a full buffer, is dropped:
the bell only hurries what the idle check finds anyway, so it never fails an enqueue.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys

import anyio

SUPPORTED = sys.platform.startswith("linux")  # abstract socket addresses


class Doorbell:
    """The bell of the database file at ``path``: ``listen`` + ``wait`` on one side,
    ``ring`` on the other."""

    def __init__(self, path: str) -> None:
        digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:32]
        self.address = f"\0gladd-sqlite-{digest}"
        self._listener: socket.socket | None = None
        self._sender: socket.socket | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def listen(self) -> bool:
        """Hold the bell; False while another process holds it (asked again next time)."""
        if self._listener is not None:
            return True
        if not SUPPORTED:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
        except OSError:  # EADDRINUSE: another store waits on this file
            sock.close()
            return False
        sock.setblocking(False)
        self._listener = sock
        return True

    def ring(self) -> None:
        """Tell the waiting store there is work; never blocks, never raises."""
        if self._listener is not None or not SUPPORTED:
            return  # the store holding the bell wakes its own waiters in-process
        try:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            self._sender.sendto(b"\x01", self.address)
        except OSError:  # nobody listening (ECONNREFUSED), or its buffer is full (EAGAIN)
            pass

    async def wait(self) -> None:
        """Return once rung: at once if rung since the last wait. Needs :meth:`listen`."""
        sock = self._listener
        assert sock is not None, "listen() first"
        while not _drain(sock):
            await anyio.wait_readable(sock)

    def close(self) -> None:
        """Let the bell go; a waiter in the event loop gets ClosedResourceError."""
        if self._listener is not None:
            with contextlib.suppress(RuntimeError):  # no event loop: nobody can be waiting
                anyio.notify_closing(self._listener)
        for sock in (self._listener, self._sender):
            if sock is not None:
                sock.close()
        self._listener = self._sender = None


def _drain(sock: socket.socket) -> bool:
    """Read every ring waiting; whether there was any."""
    rung = False
    while True:
        try:
            sock.recv(64)
        except BlockingIOError:
            return rung
        rung = True
