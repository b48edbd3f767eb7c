"""Run the real ``gladd`` console script as a child process, as systemd would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

GLADD = str(Path(sys.executable).parent / "gladd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    path: Path
    sock: socket.socket = field(init=False)
    received: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait_for(self, key: str, timeout: float = 15.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append(message)
            if key in message:
                return message
        raise AssertionError(f"no {key} within {timeout}s; got {self.received}")


@dataclass
class Gladd:
    """One real ``gladd run`` process with its own state dir, port and notify socket."""

    tmp: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    notify: NotifySocket = field(init=False)

    def __post_init__(self) -> None:
        self.notify = NotifySocket(self.tmp / "notify.sock")
        self.state_dir = self.tmp / "state"
        self.policies = self.tmp / "policies.toml"
        repo = Path(__file__).resolve().parents[2]
        self.policies.write_text((repo / "policies.toml").read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
        env.update(NOTIFY_SOCKET=str(self.notify.path), **extra)
        return env

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        argv = [
            GLADD,
            "run",
            "--policies",
            str(self.policies),
            "--state-dir",
            str(self.state_dir),
            "--admin-port",
            str(self.port),
            *args,
        ]
        self.process = subprocess.Popen(
            argv, env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self.process

    def start_ready(self, *args: str, **env: str) -> dict[str, str]:
        self.start(*args, **env)
        return self.notify.wait_for("READY")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def stop(self, timeout: float = 15.0) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self.notify.sock.close()


@pytest.fixture
def gladd(tmp_path: Path) -> Iterator[Gladd]:
    instance = Gladd(tmp_path)
    yield instance
    instance.close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    return subprocess.run(
        [GLADD, *args],
        check=False,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )
