"""Edit-to-served latency of the live reload, measured on a real ``gladd run``.

Run: ``.venv/bin/python bench/bench_reload.py``. The bench owns the daemon's notify socket
(``NOTIFY_SOCKET``), so each new generation is seen the instant gladd announces it with
``READY=1`` and ``STATUS=serving policies generation N (sha256 prefix)``; the prefix proves
the generation serves the bytes just written. Two phases:

1. ``--edits`` real changes (``executor.concurrency = N``), alternating an atomic rename
   and an in-place write; each is timed from the moment the write returned to the READY
   naming its content. An edit not served within ``MISSED_AFTER`` seconds (past the 5 s
   safety-net check) is missed.
2. ``--same`` writes of identical content (touch, in-place rewrite, atomic rename in
   turn): no generation, no RELOADING, no ``reload (...)`` log line may come of them.

Exits 1 when a target is missed: p99 ≤ 250 ms, zero missed edits, phase 2 silent.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

GLADD = str(Path(sys.executable).parent / "gladd")
SHIPPED = (Path(__file__).resolve().parents[1] / "policies.toml").read_text()
TARGET_P99_MS = 250.0
MISSED_AFTER = 6.0
QUIET_AFTER = 1.0
"""Seconds to wait after the identical writes for a reload that should not come."""
CATCH_UP = 0.8
"""Seconds after start for the watcher's one catch-up check (its first 500 ms wake-up)."""
STATUS = re.compile(r"serving policies generation (\d+) \(([0-9a-f]{12})\)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Daemon:
    """A real ``gladd run`` whose notify socket and log belong to the bench."""

    home: Path
    notify: socket.socket = field(init=False)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.policies = self.home / "policies.toml"
        self.policies.write_text(SHIPPED)
        self.log_path = self.home / "gladd.log"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.home / "notify.sock"))

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
        env["NOTIFY_SOCKET"] = str(self.home / "notify.sock")
        argv = [GLADD, "run", "--policies", str(self.policies)]
        argv += ["--state-dir", str(self.home / "state"), "--admin-port", str(_free_port())]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        if self.next_message("READY", timeout=15) is None:
            raise SystemExit(f"gladd did not become READY:\n{self.log()}")
        time.sleep(CATCH_UP)
        self.drain()

    def next_message(self, key: str, *, timeout: float) -> dict[str, str] | None:
        """The next datagram carrying ``key``, or None after ``timeout`` seconds."""
        deadline = time.perf_counter() + timeout
        while (left := deadline - time.perf_counter()) > 0:
            self.notify.settimeout(left)
            try:
                data = self.notify.recv(4096)
            except TimeoutError:
                return None
            message = dict(line.split("=", 1) for line in data.decode().splitlines())
            if key in message:
                return message
        return None

    def drain(self) -> list[dict[str, str]]:
        drained = []
        self.notify.setblocking(False)
        try:
            while True:
                data = self.notify.recv(4096)
                drained.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
        except BlockingIOError:
            return drained
        finally:
            self.notify.setblocking(True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def reload_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if " - reload (" in line]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.notify.close()


@contextmanager
def running_daemon() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="gladd-bench-reload-") as home:
        daemon = Daemon(Path(home))
        try:
            daemon.start()
            yield daemon
        finally:
            daemon.stop()


def write_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def touch(path: Path, _: str) -> None:
    os.utime(path)


@dataclass
class EditTimes:
    by_mode: dict[str, list[float]] = field(default_factory=dict)
    missed: list[int] = field(default_factory=list)
    generation: int = 1

    @property
    def all(self) -> list[float]:
        return [ms for samples in self.by_mode.values() for ms in samples]


def served_after(daemon: Daemon, text: str, timeout: float) -> tuple[int, float] | None:
    """Wait for the READY that serves ``text``: (generation, perf_counter when seen)."""
    prefix = hashlib.sha256(text.encode()).hexdigest()[:12]
    deadline = time.perf_counter() + timeout
    while (left := deadline - time.perf_counter()) > 0:
        ready = daemon.next_message("READY", timeout=left)
        seen = time.perf_counter()
        if ready is None:
            return None
        match = STATUS.search(ready.get("STATUS", ""))
        if match and match[2] == prefix:
            return int(match[1]), seen
    return None


def edit_latencies(daemon: Daemon, edits: int) -> EditTimes:
    times = EditTimes()
    modes = [("atomic rename", write_atomically), ("in-place write", write_in_place)]
    for i in range(edits):
        mode, write = modes[i % 2]
        text = SHIPPED.replace("concurrency = 10", f"concurrency = {11 + i}")
        write(daemon.policies, text)
        written = time.perf_counter()
        served = served_after(daemon, text, MISSED_AFTER)
        if served is None:
            times.missed.append(i + 1)
            continue
        times.generation, seen = served
        times.by_mode.setdefault(mode, []).append((seen - written) * 1000)
    return times


@dataclass
class SameContent:
    writes: int
    generation_before: int
    generation_after: int
    notifications: list[dict[str, str]]
    reload_lines: list[str]

    @property
    def silent(self) -> bool:
        return (
            self.generation_after == self.generation_before
            and not self.notifications
            and not self.reload_lines
        )


def same_content(daemon: Daemon, writes: int, generation: int) -> SameContent:
    text = daemon.policies.read_text()
    daemon.drain()
    lines_before = len(daemon.reload_lines())
    ways = [touch, write_in_place, write_atomically]
    for i in range(writes):
        ways[i % 3](daemon.policies, text)
        time.sleep(0.02)
    time.sleep(QUIET_AFTER)
    notifications = [m for m in daemon.drain() if "READY" in m or "RELOADING" in m]
    after = generation
    for message in notifications:
        match = STATUS.search(message.get("STATUS", ""))
        after = int(match[1]) if match else after
    return SameContent(
        writes=writes,
        generation_before=generation,
        generation_after=after,
        notifications=notifications,
        reload_lines=daemon.reload_lines()[lines_before:],
    )


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest sample ≥ q% of all samples."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def report(times: EditTimes, edits: int, same: SameContent) -> bool:
    print(f"edit → served (ms), {edits} edits, from the write returning to READY=1:")
    print(f"  {'':16} {'n':>3} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}")
    for mode, samples in [*times.by_mode.items(), ("all", times.all)]:
        if samples:
            figures = [percentile(samples, q) for q in (50, 95, 99)] + [max(samples)]
            shown = " ".join(f"{v:7.1f}" for v in figures)
            print(f"  {mode:16} {len(samples):>3} {shown}")
    p99 = percentile(times.all, 99) if times.all else math.inf
    print(f"  missed edits: {len(times.missed)} {times.missed or ''}")
    print(f"  final generation: {times.generation} (expected {1 + edits})")
    print(
        f"identical content, {same.writes} touches/rewrites: generation "
        f"{same.generation_before} → {same.generation_after}, "
        f"{len(same.notifications)} READY/RELOADING, {len(same.reload_lines)} reload log lines"
    )
    for line in same.reload_lines:
        print(f"  {line}")
    checks = {
        f"p99 {p99:.1f} ms ≤ {TARGET_P99_MS:g} ms": p99 <= TARGET_P99_MS,
        "no missed edit": not times.missed,
        "one generation per edit": times.generation == 1 + edits,
        "identical content costs no reload": same.silent,
    }
    for what, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=50, help="real changes to time")
    parser.add_argument("--same", type=int, default=20, help="identical-content writes")
    args = parser.parse_args()
    with running_daemon() as daemon:
        times = edit_latencies(daemon, args.edits)
        same = same_content(daemon, args.same, times.generation)
        errors = [line for line in daemon.log().splitlines() if "| ERROR " in line]
    for line in errors:
        print(f"logged error: {line}")
    ok = report(times, args.edits, same) and not errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
