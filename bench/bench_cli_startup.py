"""How fast the ``gladd`` command starts: the fast commands beside a bare ``python3``.

Run: ``.venv/bin/python bench/bench_cli_startup.py [--runs 10]``. Starts ``gladd run`` on a
temp SQLite state directory (the shipped policies), then times, as wall time of the whole
process, each command ``--runs`` times after one warm-up run and takes the median:

- ``python3 -c pass``: the python3 on PATH, the issue's baseline (issue 15);
- the venv's own ``python -c pass`` (information: what the ``gladd`` script starts with);
- ``gladd --version``;
- ``gladd tasks enqueue gladd.noop`` against the running daemon (it serves the same store,
  so the task goes through it), and, for information, with no daemon at the admin address
  (the direct way: the store opened, the policies and kinds loaded);
- ``gladd status`` against the same daemon;
- ``gladd check`` on the shipped policies.toml.

Target (✓/✗, exit 1 on a miss): each of ``--version``, ``tasks enqueue`` (by the daemon),
``status`` and ``check`` ≤ 2 x the ``python3 -c pass`` median. Also lists, per command,
which of the heavy packages (pydantic, httpx, anyio, ...) its start imported, from one
``python -X importtime`` run.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_executor import _free_port as free_port
from bench_executor import stop_process

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"
FACTOR = 2.0
HEAVY = ("pydantic", "pydantic_settings", "httpx", "anyio", "asyncio", "loguru", "starlette")


CACHE = Path(tempfile.mkdtemp(prefix="gladd_bench_cli_cache_"))
"""``gladd check``'s verdict cache for this run only: the warm-up run fills it."""
atexit.register(shutil.rmtree, CACHE, ignore_errors=True)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    # Never this host's /etc/gladd/gladd.env, nor the user's cache.
    return {**env, "GLADD_ENV_FILE": "", "XDG_CACHE_HOME": str(CACHE)}


@contextlib.contextmanager
def daemon(state: Path) -> Iterator[int]:
    """``gladd run`` on ``state`` with the shipped policies; its admin port once ready."""
    port = free_port()
    args = [str(VENV / "gladd"), "run", "--state-dir", str(state), "--admin-port", str(port)]
    args += ["--policies", str(ROOT / "policies.toml")]
    log = state.parent / "daemon.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=clean_env())
    try:
        deadline = time.monotonic() + 30
        while not _ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gladd run did not get ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield port
    finally:
        stop_process(proc)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def median_ms(argv: list[str], runs: int) -> float:
    """The median wall time of ``argv`` over ``runs`` runs, after one warm-up; each must
    succeed."""
    times = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(argv, env=clean_env(), capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.decode()[-500:]}")
        if attempt:
            times.append(elapsed * 1000)
    return statistics.median(times)


def heavy_imports(argv: list[str]) -> list[str]:
    """Which of HEAVY the ``gladd`` command ``argv`` imports (one run with the importtime
    report on, the same script and arguments as the timed runs)."""
    env = {**clean_env(), "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seen = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    return [name for name in HEAVY if name in seen]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    python3 = shutil.which("python3") or "python3"
    gladd = str(VENV / "gladd")
    with tempfile.TemporaryDirectory(prefix="gladd_bench_cli_") as tmp:
        state = Path(tmp) / "state"
        with daemon(state) as port:
            at = ["--state-dir", str(state), "--admin-port", str(port)]
            direct = ["--state-dir", str(state), "--admin-port", str(free_port())]
            rows: list[tuple[str, list[str], bool]] = [
                (f"{python3} -c pass (baseline)", [python3, "-c", "pass"], False),
                (".venv python -c pass (info)", [str(VENV / "python"), "-c", "pass"], False),
                ("gladd --version", [gladd, "--version"], True),
                (
                    "gladd tasks enqueue (by the daemon)",
                    [gladd, "tasks", "enqueue", "gladd.noop", *at],
                    True,
                ),
                (
                    "gladd tasks enqueue (direct, info)",
                    [gladd, "tasks", "enqueue", "gladd.noop", *direct],
                    False,
                ),
                ("gladd status", [gladd, "status", "--admin-port", str(port)], True),
                (
                    "gladd check (shipped policies)",
                    [gladd, "check", str(ROOT / "policies.toml")],
                    True,
                ),
            ]
            measured = [(name, argv, target, median_ms(argv, runs)) for name, argv, target in rows]
            heavy = {name: heavy_imports(argv) for name, argv, target in rows if argv[0] == gladd}
    baseline = measured[0][3]
    limit = FACTOR * baseline
    print(
        f"median of {runs} runs (after 1 warm-up), wall ms; target ≤ {limit:.0f} ms (2 x baseline)"
    )
    missed = False
    for name, _, target, ms in measured:
        mark = (" ✓" if ms <= limit else " ✗") if target else "  "
        missed |= target and ms > limit
        imported = heavy.get(name)
        extra = (
            f"   imports: {', '.join(imported) or 'none of ' + '/'.join(HEAVY[:4])}"
            if imported is not None
            else ""
        )
        print(f"{mark} {name:<40} {ms:7.1f} ms  ({ms / baseline:4.2f} x){extra}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
