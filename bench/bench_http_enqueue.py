"""HTTP enqueues into a real daemon: one client at a time, then 20 at once (group commit).

Run: ``.venv/bin/python bench/bench_http_enqueue.py [--seconds 5] [--clients 20]``. Starts
``gladd run`` on SQLite (a temp state directory) and on PostgreSQL (a fresh database from
GLADD_TEST_DATABASE_URL), and for ``--seconds`` each sends ``POST /tasks`` (``gladd.noop``)
over plain ``http.client`` keep-alive connections — one client, then ``--clients`` at
once, each a process of its own (``_http_client.py``: a client that is not itself the
bottleneck; httpx costs ~4 ms a request here, and 20 threads would share one GIL). Every 201
means a committed task (the daemon answers only after its commit).

Target (✓/✗, exit 1 on a miss): the concurrent rate ≥ 4x the one-at-a-time rate, on each
store (concurrent enqueues share transactions: gladd/executor/group_commit.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_executor import ROOT, Report, _free_port, fresh_database, stop_process

FACTOR = 4.0
CLIENT = Path(__file__).resolve().parent / "_http_client.py"


@contextlib.contextmanager
def daemon(database_url: str | None) -> Iterator[int]:
    """A ``gladd run`` on a temp state dir (and ``database_url`` if given); its port."""
    gladd = ROOT / ".venv" / "bin" / "gladd"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    with tempfile.TemporaryDirectory(prefix="gladd_bench_") as state:
        policies = Path(state) / "policies.toml"
        # No executor work: its one slot is taken (occupy), so the noop tasks stay pending
        # and no enqueue's wake-up starts a claim; only the enqueue path is measured.
        policies.write_text('[executor]\nconcurrency = 1\nshutdown_grace = "1s"\n')
        args = [str(gladd), "run", "--state-dir", state, "--admin-port", str(port)]
        args += ["--policies", str(policies)]
        if database_url:
            args += ["--database-url", database_url]
        log = Path(state) / "daemon.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"gladd run exited {proc.returncode}: {log.read_text()}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).is_success:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gladd never got ready: {log.read_text()[-2000:]}")
                time.sleep(0.1)
            occupy(port)
            yield port
        finally:
            stop_process(proc)


def occupy(port: int) -> None:
    """Fill the daemon's one slot with an hour's ``gladd.sleep``; return once it runs."""
    base = f"http://127.0.0.1:{port}"
    sleep = {"kind": "gladd.sleep", "payload": {"seconds": 3600}}
    task = httpx.post(f"{base}/tasks", json=sleep, timeout=10).json()["id"]
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/tasks/{task}", timeout=10).json()["state"] != "running":
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon never started the task that fills its slot")
        time.sleep(0.05)


def post_for(port: int, seconds: float, clients: int) -> int:
    """201s from ``clients`` processes (``_http_client.py``), one keep-alive connection
    each, sending as fast as answered, all for the same ``seconds``."""
    start = time.time() + 1.0  # every client started and connected by then
    args = [sys.executable, str(CLIENT), str(port), repr(start), repr(seconds)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    counts = [proc.communicate()[0] for proc in procs]
    if failed := [proc.returncode for proc in procs if proc.returncode]:
        raise RuntimeError(f"{len(failed)} of {clients} clients failed (see above)")
    return sum(int(count) for count in counts)


def measure(rep: Report, name: str, database_url: str | None, seconds: float, n: int) -> None:
    with daemon(database_url) as port:
        post_for(port, 0.5, 1)  # warm up
        one = post_for(port, seconds, 1) / seconds
        many = post_for(port, seconds, n) / seconds
    rep.add(f"POST /tasks {name}, 1 client", f"{one:,.0f} /s")
    rep.add(
        f"POST /tasks {name}, {n} clients", f"{many:,.0f} /s {many / one:.1f}x", f"≥ {FACTOR:g}x"
    )
    rep.verdict(many >= FACTOR * one)


def measure_both(rep: Report, seconds: float, clients: int) -> None:
    """:func:`measure` on SQLite, then on a fresh PostgreSQL database."""
    measure(rep, "sqlite", None, seconds, clients)

    async def on_postgres() -> None:
        async with fresh_database() as url:
            await asyncio.to_thread(measure, rep, "postgresql", url, seconds, clients)

    asyncio.run(on_postgres())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    rep = Report()
    measure_both(rep, args.seconds, args.clients)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
