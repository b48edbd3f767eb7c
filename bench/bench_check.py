"""``gladd check`` wall time: a cached verdict vs a bare ``python3 -c pass`` (issue 15).

Target: the median of 10 runs of ``gladd check`` (its verdict cached by a run before) at most
2 x the median of 10 runs of ``python3 -c pass``, ``python3`` as found on PATH. For
information: a full check (``--no-cache``), the venv's own interpreter doing nothing, and the
cached path alone — the way the lazy command tree calls it (a parser with ``check``'s flags,
then :func:`gladd.cli.check.run_check`), apart from what ``gladd`` imports before it.

Each command runs in a fresh process, on the shipped policies and plugins, with a cache
directory of its own; the runs of each alternate, so a noisy minute spreads over all.

    .venv/bin/python bench/bench_check.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLADD = str(Path(sys.executable).parent / "gladd")
ENTRY = """\
import argparse, sys
from gladd.cli.tree import add_check_command
parser = argparse.ArgumentParser(prog="gladd")
add_check_command(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.handler(args))
"""
TARGET = 2.0


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    python3 = shutil.which("python3")
    if python3 is None:
        print("no python3 on PATH")
        return 1
    cache = tempfile.mkdtemp(prefix="gladd-bench-check-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    env.update(GLADD_ENV_FILE="", XDG_CACHE_HOME=cache)
    commands = {
        "python3 -c pass": [python3, "-c", "pass"],
        "venv python -c pass": [sys.executable, "-c", "pass"],
        "gladd check (cached)": [GLADD, "check"],
        "run_check alone (cached)": [sys.executable, "-c", ENTRY, "check"],
        "gladd check --no-cache": [GLADD, "check", "--no-cache"],
    }
    try:
        for argv in commands.values():
            wall(argv, env)  # warm the page cache; the cached ones store their verdict
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(wall(argv, env))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    base = medians["python3 -c pass"]
    print(f"median of {runs} wall times, ms (python3: {python3})")
    for name, ms in medians.items():
        print(f"  {name:<26} {ms:7.1f}   {ms / base:5.2f} x python3 -c pass")
    ok = medians["gladd check (cached)"] <= TARGET * base
    print(f"target gladd check (cached) ≤ {TARGET} x python3 -c pass: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
