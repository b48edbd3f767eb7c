"""A TCP proxy to put between gladd and PostgreSQL, so a test can take the database away.

``pause()`` closes the listener and resets every forwarded connection (what a crashed
server or a cut network looks like: new connections are refused, open ones die);
``resume()`` listens on the same port again. Threads, not asyncio: the test itself is
synchronous and the proxy must keep forwarding while it sleeps or runs the CLI.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

from tests.e2e.conftest import free_port


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; start with ``resume()`` (or as a context)."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self.accepted = 0

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.pause()

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by this proxy's."""
        scheme, rest = database_url.split("://", 1)
        userinfo, _, hostpath = rest.rpartition("@")
        path = hostpath.split("/", 1)[1] if "/" in hostpath else ""
        user = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{user}127.0.0.1:{self.port}/{path}"

    @property
    def paused(self) -> bool:
        return self._listener is None

    def resume(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def pause(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._open = self._open, set()
        if listener is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the thread in accept()
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in doomed:
            _reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:  # paused meanwhile
                    live = False
                else:
                    live = True
                    self._open |= {client, upstream}
                    self.accepted += 1
            if not live:
                _reset(client)
                _reset(upstream)
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {src, dst}
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST: the peer sees the connection die, not a polite end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)  # wakes a pump blocked in recv() without a FIN
    sock.close()
