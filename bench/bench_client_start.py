"""An application's first enqueue: import gladd, make a Client, enqueue one task.

Run: ``.venv/bin/python bench/bench_client_start.py [--runs 10] [--source PATH]``. Each run
is a fresh interpreter (``python -X importtime`` aside, it is what a web worker or a script
pays on its first task) on a SQLite store a daemon with the shipped plugins published its
kinds to: ``import gladd``, then ``gladd.SyncClient(url).enqueue("http.request", ...)``.
Prints the median of ``--runs`` for the import, the first enqueue (client made, store
opened, catalogue read, task stored) and the whole, beside a bare ``python -c pass``, and
which plugin modules the process imported.

``--source`` runs the same against another checkout's ``gladd`` (its path first on
``sys.path``), e.g. the main branch, for a before/after. A store it cannot read the
catalogue of (an older gladd) is validated its own way, whatever that is.

Target (✓/✗, exit 1 on a miss): no plugin module imported by the enqueue (issue 15).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, sys, time
started = time.perf_counter()
import gladd
imported = time.perf_counter()
with gladd.SyncClient(sys.argv[1]) as client:
    client.enqueue("http.request", {"url": "https://example.invalid/hook"})
enqueued = time.perf_counter()
plugins = sorted(
    n for n in sys.modules
    if n.startswith(("gladd_plugin_", "gladd._shipped_plugins", "plugins", "gladd.plugins"))
)
print(json.dumps({
    "gladd": gladd.__file__, "import": imported - started, "enqueue": enqueued - imported,
    "plugins": plugins, "modules": len(sys.modules),
}))
"""


PREPARE = """
import sys
from datetime import UTC, datetime
from pathlib import Path
import anyio
from gladd.plugins.known_kinds import known_kinds
from gladd.policies import load_policies
from gladd.store.factory import store_from_url

async def main():
    store = store_from_url(sys.argv[1])
    await store.open()
    try:
        if hasattr(store, "publish_kinds"):  # an older gladd has no catalogue
            from gladd.executor.catalogue import kind_specs
            kinds = known_kinds(load_policies(Path(sys.argv[2])).policies)
            await store.publish_kinds("bench", kind_specs(kinds), now=datetime.now(UTC))
    finally:
        await store.close()

anyio.run(main)
"""
"""The store as a daemon with the shipped plugins leaves it, by the gladd under test."""


def _env(source: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    env.update(GLADD_ENV_FILE="", GLADD_POLICIES=str(ROOT / "policies.toml"))
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def _bare(runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--source", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'tasks.db'}"
        subprocess.run(
            [sys.executable, "-c", PREPARE, url, str(ROOT / "policies.toml")],
            env=_env(args.source),
            cwd=tmp,
            check=True,
        )
        results, walls = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", RUN, url],
                env=_env(args.source),
                cwd=tmp,  # not this checkout: `-c` puts the working directory on sys.path
                capture_output=True,
                text=True,
                check=False,
            )
            walls.append(time.perf_counter() - start)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            results.append(json.loads(done.stdout))
    bare = _bare(args.runs)
    print(
        f"gladd from {Path(results[0]['gladd']).parent}; median of {args.runs} fresh interpreters"
    )
    print(f"  bare `python -c pass`          {bare * 1000:7.1f} ms")
    print(f"  import gladd                   {_median(results, 'import') * 1000:7.1f} ms")
    print(f"  first enqueue (client + task)  {_median(results, 'enqueue') * 1000:7.1f} ms")
    print(f"  whole process                  {statistics.median(walls) * 1000:7.1f} ms")
    print(
        f"  modules loaded                 {statistics.median(r['modules'] for r in results):7.0f}"
    )
    plugins = results[0]["plugins"]
    ok = not plugins
    shown = ", ".join(plugins) if plugins else "none"
    print(f"  plugin modules imported        {shown} {'✓' if ok else '✗'}")
    return 0 if ok else 1


def _median(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


if __name__ == "__main__":
    sys.exit(main())
