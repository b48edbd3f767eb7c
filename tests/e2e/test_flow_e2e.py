"""Flow control through real daemons: limits, rates, cooldowns and pauses, seen from outside.

Every test runs real ``gladd run`` processes on real ``policies.toml`` files (three nodes on
one PostgreSQL where the limit is cluster-wide) and talks to them over HTTP and the CLI.
The work is done by the test plugin ``tests/e2e/flow_plugins/flowprobe.py``, whose handler
appends its start and end to a file per process: the limits are checked from those
intervals afterwards, as a sweep over the start and end events, not from what gladd says
about itself.

A handler's interval lies inside the store's "running" (claim to stored outcome), so a
limit the store keeps can only look tighter from the handlers' side, never looser.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import LoggedGladd, executor_policies, run_cli, wait_until

pytestmark = [pytest.mark.e2e]

Nodes = Callable[[str], LoggedGladd]
PLUGINS = Path(__file__).parent / "flow_plugins"
PLUGIN_ENV = {"GLADD_PLUGIN_PATHS": str(PLUGINS)}
WORK, OTHER, FETCH = "flowprobe.work", "flowprobe.other", "flowcall.fetch"


# -- the recorded runs -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt as its handler recorded it (``end`` None: it has not ended)."""

    id: int
    kind: str
    attempt: int
    claimed: float  # the claim's time (the task's updated_at), by the claiming node's clock
    start: float
    end: float | None
    outcome: str | None
    pid: int


def runs(log_dir: Path) -> list[Run]:
    """Every attempt recorded under ``log_dir`` by any node, by start time."""
    started: dict[tuple[int, int, float], dict[str, Any]] = {}
    ended: dict[tuple[int, int, float], dict[str, Any]] = {}
    for path in log_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            key = (event["pid"], event["id"], event["claimed"])
            (started if event["ev"] == "start" else ended)[key] = event
    found = [
        Run(
            id=s["id"],
            kind=s["kind"],
            attempt=s["attempt"],
            claimed=s["claimed"],
            start=s["t"],
            end=ended[key]["t"] if key in ended else None,
            outcome=ended[key]["outcome"] if key in ended else None,
            pid=s["pid"],
        )
        for key, s in started.items()
    ]
    return sorted(found, key=lambda r: r.start)


def most_at_once(found: Sequence[Run]) -> int:
    """The most runs in progress at any instant: a sweep over starts and ends, an end at
    the same instant as a start counted first (the slot was free)."""
    events = [(r.start, 1) for r in found] + [(r.end, -1) for r in found if r.end is not None]
    now = peak = 0
    for _, step in sorted(events):
        now += step
        peak = max(peak, now)
    return peak


def busiest_second(times: Sequence[float]) -> int:
    """The most of ``times`` in any one-second window [t, t + 1), t at each of them."""
    ordered = sorted(times)
    peak, low = 0, 0
    for high, t in enumerate(ordered):
        while ordered[low] <= t - 1.0:
            low += 1
        peak = max(peak, high - low + 1)
    return peak


def running_at(found: Sequence[Run], at: float, *, besides: Run) -> int:
    """How many runs other than ``besides`` were in progress at ``at``."""
    return sum(
        1 for r in found if r is not besides and r.start <= at and (r.end is None or r.end > at)
    )


# -- the nodes ---------------------------------------------------------------------------


def probe_policies(
    log_dir: Path, *, concurrency: int = 8, poll_interval: str = "100ms", extra: str = ""
) -> str:
    """A fast executor, the flowprobe plugin's settings, and ``extra``."""
    return (
        executor_policies(concurrency=concurrency, poll_interval=poll_interval)
        + f'\n[plugins.flowprobe]\nlog_dir = "{log_dir}"\n'
        + extra
    )


def start_nodes(
    nodes: Nodes, names: Sequence[str], policies: str, database: str | None = None
) -> list[LoggedGladd]:
    made = [nodes(name) for name in names]
    for node in made:
        node.policies.write_text(policies)
    args = ("--database-url", database) if database else ()

    def start(node: LoggedGladd) -> None:
        node.start_serving(*args, GLADD_NODE_NAME=node.tmp.name, **PLUGIN_ENV)

    with ThreadPoolExecutor(len(made)) as pool:
        list(pool.map(start, made))
    return made


def store_flags(node: LoggedGladd, database: str | None) -> list[str]:
    """CLI flags naming the node's store (its database, or its SQLite state dir)."""
    where = ["--database-url", database] if database else ["--state-dir", str(node.state_dir)]
    return [*where, "--policies", str(node.policies)]


def cli(*args: str) -> Any:
    return run_cli(*args, env=PLUGIN_ENV)


def enqueue_many(api: httpx.Client, node: LoggedGladd, kind: str, payloads: list[Any]) -> list[int]:
    """POST /tasks for each payload, a few at a time; the ids."""

    def one(payload: Any) -> int:
        made = api.post(f"{node.url}/tasks", json={"kind": kind, "payload": payload})
        assert made.status_code == 201, made.text
        return int(made.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, payloads))


async def _tasks(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch("SELECT id, kind, state, attempt, errors FROM gladd_tasks")
    finally:
        await conn.close()


def stored(url: str) -> dict[int, dict[str, Any]]:
    """Every task in the database at ``url``, by id (straight from PostgreSQL)."""
    return {r["id"]: dict(r) for r in asyncio.run(_tasks(url))}


def all_succeeded(url: str, ids: Sequence[int]) -> Callable[[], bool]:
    def done() -> bool:
        tasks = stored(url)
        return all(tasks[i]["state"] == "succeeded" for i in ids)

    return done


def health(node: LoggedGladd, check: str) -> dict[str, Any]:
    return node.get("/health").json()["checks"][check][0]  # type: ignore[no-any-return]


def kind_held(node: LoggedGladd, kind: str) -> str | None:
    """The target holding ``kind`` back on ``node`` now, from its /metrics (live)."""
    text = node.get("/metrics").text
    found = re.search(
        rf'^gladd_kind_held\{{kind="{re.escape(kind)}",target="([^"]+)"\}} 1', text, re.M
    )
    return found.group(1) if found else None


def stop_all(made: Sequence[LoggedGladd]) -> None:
    for node in made:
        code, log = node.stop()
        assert code == 0, log


# -- 1. a cluster-wide concurrency limit -------------------------------------------------


@pytest.mark.postgres
def test_three_nodes_never_run_more_than_the_kinds_concurrency(
    nodes: Nodes, pg_database: str, api: httpx.Client, tmp_path: Path
) -> None:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    policies = probe_policies(log_dir, extra=f'\n[tasks."{WORK}"]\nconcurrency = 5\n')
    three = start_nodes(nodes, ("a", "b", "c"), policies, pg_database)

    ids = enqueue_many(api, three[0], WORK, [{"ms": 20 + i % 31} for i in range(1000)])
    wait_until(all_succeeded(pg_database, ids), timeout=60, interval=0.5, what="1000 succeeded")
    stop_all(three)

    found = runs(log_dir)
    print(f"figures: most at once {most_at_once(found)}, runs {len(found)}")
    assert most_at_once(found) <= 5
    assert most_at_once(found) == 5  # the limit was reached: the test can tell
    assert sorted(r.id for r in found) == sorted(ids)  # one run each
    assert {(r.attempt, r.outcome) for r in found} == {(1, "ok")}
    assert len({r.pid for r in found}) == 3  # every node took part
    tasks = stored(pg_database)
    assert {(t["state"], t["attempt"]) for t in tasks.values()} == {("succeeded", 1)}


# -- 2. a cluster-wide rate ---------------------------------------------------------------


@pytest.mark.postgres
def test_three_nodes_never_start_more_than_the_rate_and_burst_in_a_second(
    nodes: Nodes, pg_database: str, api: httpx.Client, tmp_path: Path
) -> None:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    rated = f'\n[tasks."{WORK}"]\nrate = "50/s"\nburst = 5\n'
    three = start_nodes(nodes, ("a", "b", "c"), probe_policies(log_dir, extra=rated), pg_database)

    ids = enqueue_many(api, three[0], WORK, [{"ms": 5} for _ in range(300)])
    wait_until(all_succeeded(pg_database, ids), timeout=40, interval=0.5, what="300 succeeded")
    stop_all(three)

    found = runs(log_dir)
    assert sorted(r.id for r in found) == sorted(ids)
    assert {(r.attempt, r.outcome) for r in found} == {(1, "ok")}
    starts = [r.start for r in found]
    print(
        f"figures: busiest second {busiest_second([r.claimed for r in found])} claims, "
        f"{busiest_second(starts)} handler starts; span {max(starts) - min(starts):.2f}s"
    )
    # A start is a claim: the rate is kept at the claim's time (its token's time).
    assert busiest_second([r.claimed for r in found]) <= 50 + 5
    # 300 starts at 50/s after a burst of 5 take 5.9 s at least.
    claimed = sorted(r.claimed for r in found)
    assert claimed[-1] - claimed[0] >= (300 - 5) / 50 - 0.01
    assert len({r.pid for r in found}) == 3


# -- 3. a service's cooldown across the cluster --------------------------------------------


class Flaky:
    """A service that answers 429 with ``Retry-After`` for ``window`` seconds from its first
    request, then 200; it notes when each request arrived and what it answered."""

    def __init__(self, window: float, retry_after: int) -> None:
        self.window, self.retry_after = window, retry_after
        self.lock = threading.Lock()
        self.first: float | None = None
        self.seen: list[tuple[float, int]] = []
        self.cooled = threading.Event()
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                now = time.time()
                with flaky.lock:
                    if flaky.first is None:
                        flaky.first = now
                    status = 429 if now < flaky.first + flaky.window else 200
                    flaky.seen.append((now, status))
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", str(flaky.retry_after))
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 429:
                    flaky.cooled.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    # Retry-After 5 s: /health rounds come every 2 s, and a CLI run takes seconds on a busy
    # machine; both must fall inside the cooldown to see it.
    service = Flaky(window=1.0, retry_after=5)
    thread = threading.Thread(target=service.server.serve_forever, daemon=True)
    thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


@pytest.mark.postgres
def test_a_429_with_retry_after_cools_the_service_down_on_every_node_without_spending_attempts(
    nodes: Nodes, pg_database: str, api: httpx.Client, tmp_path: Path, flaky: Flaky
) -> None:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    service = (
        f'\n[services.flaky]\nhosts = ["127.0.0.1:{flaky.port}"]\ntimeout = "2s"\n'
        f'\n[plugins.flowcall]\nlog_dir = "{log_dir}"\n'
        f'base_url = "http://127.0.0.1:{flaky.port}"\n'
    )
    policies = probe_policies(log_dir, concurrency=4, extra=service)
    three = start_nodes(nodes, ("a", "b", "c"), policies, pg_database)

    ids = enqueue_many(api, three[0], FETCH, [{"path": f"/{i}"} for i in range(30)])
    assert flaky.cooled.wait(10), "no 429 sent"
    assert flaky.first is not None
    first = flaky.first
    reset = first + flaky.retry_after

    # While it lasts: every node holds the kind back, says so, and the store has the pause.
    for node in three:
        wait_until(
            lambda node=node: kind_held(node, FETCH) == "cooldown:flaky",
            timeout=1,
            what=f"{node.tmp.name} holds {FETCH} back",
        )
    shown = cli("pauses", "--json", *store_flags(three[0], pg_database))
    assert shown.returncode == 0, shown.stderr
    [pause] = json.loads(shown.stdout)
    assert (pause["target"], pause["kinds"]) == ("cooldown:flaky", [FETCH])
    assert pause["by"].startswith("cooldown:")
    assert "HTTP 429 with Retry-After 5" in pause["reason"]
    for node in three:
        wait_until(
            lambda node=node: health(node, "flow:pauses")["status"] == "warn",
            timeout=2.5,
            what=f"{node.tmp.name}'s flow:pauses warns",
        )
        assert "cooldown:flaky" in health(node, "flow:pauses")["output"]
    assert time.time() < reset, "the checks outlasted the cooldown: nothing shown is proven"

    wait_until(all_succeeded(pg_database, ids), timeout=20, interval=0.2, what="30 succeeded")
    stop_all(three)

    # Nothing sent from 300 ms after the first 429 (what was already on its way) to the reset.
    print(f"figures: requests {[(round(at - first, 3), s) for at, s in flaky.seen]}")
    during = [(at - first, status) for at, status in flaky.seen if first + 0.3 < at < reset]
    assert during == []
    assert [s for _, s in flaky.seen].count(200) == 30  # each task once, after the reset
    assert min(at for at, s in flaky.seen if s == 200) >= reset
    tasks = stored(pg_database)
    assert {(t["state"], t["attempt"]) for t in tasks.values()} == {("succeeded", 1)}
    found = runs(log_dir)
    refused = [r for r in found if r.outcome != "ok"]
    assert refused, "no attempt met the cooldown"
    assert {r.outcome for r in refused} <= {"error:ServiceCooldown"}
    assert {r.attempt for r in found} == {1}  # released ones were refunded
    assert sorted(r.id for r in found if r.outcome == "ok") == sorted(ids)


# -- 4. an operator's pause ---------------------------------------------------------------


@pytest.mark.postgres
def test_a_cli_pause_stops_the_kind_on_every_node_within_a_second_and_resume_restarts_it(
    nodes: Nodes, pg_database: str, api: httpx.Client, tmp_path: Path
) -> None:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    three = start_nodes(nodes, ("a", "b", "c"), probe_policies(log_dir), pg_database)
    flags = store_flags(three[0], pg_database)

    paused = cli("pause", WORK, "--reason", "deploy in progress", *flags)
    assert paused.returncode == 0, paused.stderr
    assert f"paused kind:{WORK} until resumed; holds back: {WORK}" in paused.stdout
    for node in three:
        wait_until(
            lambda node=node: kind_held(node, WORK) == f"kind:{WORK}",
            timeout=1,
            what=f"{node.tmp.name} holds {WORK} back",
        )

    held = enqueue_many(api, three[1], WORK, [{"ms": 10} for _ in range(20)])
    others = enqueue_many(api, three[2], OTHER, [{"ms": 10} for _ in range(40)])
    wait_until(all_succeeded(pg_database, others), timeout=15, interval=0.1, what="others ran")
    shown = cli("tasks", "show", str(held[0]), *flags)
    assert shown.returncode == 0, shown.stderr
    assert re.search(
        rf"waiting: paused \(kind:{re.escape(WORK)}, by cli:[^)]+\): deploy in progress",
        shown.stdout,
    ), shown.stdout
    as_json = json.loads(cli("tasks", "show", str(held[0]), "--json", *flags).stdout)
    assert as_json["state"] == "pending"
    assert len(as_json["waiting"]) == 1
    assert as_json["waiting"][0].startswith(f"paused (kind:{WORK}, by cli:")
    api_view = api.get(f"{three[0].url}/tasks/{held[0]}").json()
    assert api_view["waiting"] == as_json["waiting"]
    assert [r for r in runs(log_dir) if r.kind == WORK] == []
    tasks = stored(pg_database)
    assert {(tasks[i]["state"], tasks[i]["attempt"]) for i in held} == {("pending", 0)}

    resumed = cli("resume", WORK, *flags)
    at = time.time()
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"resumed kind:{WORK} (paused by cli:")
    wait_until(all_succeeded(pg_database, held), timeout=10, interval=0.1, what="held ones ran")
    stop_all(three)
    work = [r for r in runs(log_dir) if r.kind == WORK]
    assert sorted(r.id for r in work) == sorted(held)
    assert min(r.start for r in work) - at < 1.0
    assert {(r.attempt, r.outcome) for r in work} == {(1, "ok")}


# -- 5. a limit lowered live --------------------------------------------------------------


@pytest.mark.postgres
def test_a_reload_lowering_a_limit_lets_running_tasks_finish_and_starts_none_until_below(
    nodes: Nodes, pg_database: str, api: httpx.Client, tmp_path: Path
) -> None:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()

    def limited(concurrency: int) -> str:
        return probe_policies(
            log_dir,
            concurrency=12,
            extra=f"\n[limits.pool]\nconcurrency = {concurrency}\n"
            f'\n[tasks."{WORK}"]\nlimits = ["pool"]\n',
        )

    [node] = start_nodes(nodes, ("a",), limited(10), pg_database)
    # 3 s each: the ten first still run when the reload is in, however slow the machine.
    ids = enqueue_many(api, node, WORK, [{"ms": 3000} for _ in range(12)])

    def ten_running() -> bool:
        return sum(1 for r in runs(log_dir) if r.end is None) == 10

    wait_until(ten_running, timeout=10, interval=0.02, what="10 running")
    node.policies.write_text(limited(2))
    # POST /reload, as `gladd reload` does, without a CLI's start-up time in between.
    reloaded = api.post(f"{node.url}/reload", timeout=30)
    applied = time.time()
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["outcome"] != "rejected", reloaded.text
    generation = health(node, "policies:generation")
    assert generation["status"] == "pass", generation
    gauge = re.search(
        r'^gladd_limit_allowed\{limit="limit:pool"\} (\S+)$', node.get("/metrics").text, re.M
    )
    assert gauge is not None
    assert float(gauge.group(1)) == 2.0

    wait_until(all_succeeded(pg_database, ids), timeout=20, interval=0.2, what="12 succeeded")
    code, log = node.stop()
    assert code == 0, log

    found = runs(log_dir)
    assert sorted(r.id for r in found) == sorted(ids)
    assert {(r.attempt, r.outcome) for r in found} == {(1, "ok")}  # none cancelled or failed
    before = [r for r in found if r.start < applied]
    ends = [round(r.end - applied, 3) for r in before if r.end is not None]
    print(f"figures: {len(before)} started before the reload, ended after it by {ends}")
    assert len(before) == 10  # the ten running at the reload, and no more
    assert all(r.end is not None and r.end > applied for r in before)  # all ran through it
    after = [r for r in found if r.start >= applied]
    assert len(after) == 2
    for run in after:
        assert running_at(found, run.start, besides=run) < 2, run
    assert most_at_once(after) <= 2


# -- 6. bad input -------------------------------------------------------------------------


def test_gladd_check_locates_each_bad_flow_key_and_exits_78(tmp_path: Path) -> None:
    cases = {
        "undefined limit": (
            'schema_version = 1\n\n[tasks."gladd.sleep"]\nlimits = ["nope"]\n',
            r'policies\.toml:4:\d+: tasks\."gladd\.sleep"\.limits\[0\]: '
            r"no \[limits\.nope\] is defined \(defined: none\)",
        ),
        "rate fast": (
            'schema_version = 1\n\n[limits.crm]\nrate = "fast"\n',
            r"policies\.toml:4:8: limits\.crm\.rate: 'fast' is not a rate: write a count, a "
            r"slash and a period",
        ),
        "rate 0/s": (
            'schema_version = 1\n\n[tasks."gladd.sleep"]\nrate = "0/s"\n',
            r'policies\.toml:4:8: tasks\."gladd\.sleep"\.rate: \'0/s\' allows nothing',
        ),
        "burst without rate": (
            "schema_version = 1\n\n[limits.crm]\nconcurrency = 3\nburst = 5\n",
            r"policies\.toml:5:9: limits\.crm\.burst: has no effect: the limit sets no rate",
        ),
    }
    for name, (text, message) in cases.items():
        policies = tmp_path / "policies.toml"
        policies.write_text(text)
        done = run_cli("check", str(policies))
        assert done.returncode == 78, (name, done.stdout, done.stderr)
        assert re.search(message, done.stderr), (name, done.stderr)


def test_a_bad_reload_keeps_the_old_policies_and_bad_pauses_are_refused(
    nodes: Nodes, api: httpx.Client, tmp_path: Path
) -> None:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    good = probe_policies(log_dir, extra=f'\n[tasks."{WORK}"]\nconcurrency = 3\n')
    [node] = start_nodes(nodes, ("a",), good)
    flags = store_flags(node, None)
    before = api.get(f"{node.url}/health").json()["checks"]["policies:generation"][0]

    for bad in ('rate = "fast"', "burst = 4", 'limits = ["nope"]'):
        node.policies.write_text(good.replace("concurrency = 3", f"concurrency = 1\n{bad}"))
        reloaded = run_cli("reload", "--admin-port", str(node.port))
        assert reloaded.returncode == 78, (bad, reloaded.stdout, reloaded.stderr)
        assert re.search(rf'policies\.toml:\d+:\d+: tasks\."{re.escape(WORK)}"\.', reloaded.stderr)
        gauge = re.search(
            rf'^gladd_limit_allowed\{{limit="kind:{re.escape(WORK)}"\}} (\S+)$',
            node.get("/metrics").text,
            re.M,
        )
        assert gauge is not None, bad
        assert float(gauge.group(1)) == 3.0, bad  # nothing changed
    after = api.get(f"{node.url}/health").json()["checks"]["policies:generation"][0]
    node.policies.write_text(good)  # the CLI below reads the file: the good one again
    assert after["observedValue"] == before["observedValue"]

    unknown = cli("pause", "nope.kind", *flags)
    assert unknown.returncode == 66, unknown.stderr
    assert "no task kind 'nope.kind' to pause or resume (known: " in unknown.stderr
    assert WORK in unknown.stderr
    assert OTHER in unknown.stderr
    assert cli("pause", WORK, "--for", "soon", *flags).returncode == 65
    assert cli("pause", WORK, "--until", "yesterday", *flags).returncode == 65
    listed = cli("pauses", *flags)
    assert listed.returncode == 0, listed.stderr
    assert "no pauses: every kind is claimed" in listed.stdout
    assert json.loads(cli("pauses", "--json", *flags).stdout) == []

    missing = api.post(f"{node.url}/pauses", json={"target": "nope.kind"})
    assert missing.status_code == 404, missing.text
    assert "nope.kind" in missing.json()["error"]
    malformed = api.post(f"{node.url}/pauses", json={"target": WORK, "for": "soon"})
    assert malformed.status_code in (400, 422), malformed.text
    assert "for" in malformed.json()["error"]
    assert api.delete(f"{node.url}/pauses/nope.kind").status_code == 404
    assert api.delete(f"{node.url}/pauses/limit:nope").status_code == 404
    assert api.get(f"{node.url}/pauses").json() == {"pauses": []}
    assert api.delete(f"{node.url}/pauses/{WORK}").json()["resumed"] is False

    made = api.post(f"{node.url}/pauses", json={"target": WORK, "for": "10m", "reason": "x"})
    assert made.status_code == 201, made.text
    assert (made.json()["target"], made.json()["kinds"]) == (f"kind:{WORK}", [WORK])
    assert api.delete(f"{node.url}/pauses/{WORK}").json()["resumed"] is True
    code, log = node.stop()
    assert code == 0, log


# -- SQLite: one daemon, the same guarantees in process -------------------------------------


def test_sqlite_a_limit_holds_and_a_cli_pause_reaches_the_daemon_within_a_second(
    nodes: Nodes, api: httpx.Client, tmp_path: Path
) -> None:
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    extra = f'\n[limits.pair]\nconcurrency = 2\n\n[tasks."{WORK}"]\nlimits = ["pair"]\n'
    # A long poll interval: only the doorbell can bring the pause in time.
    [node] = start_nodes(nodes, ("a",), probe_policies(log_dir, poll_interval="5s", extra=extra))
    flags = store_flags(node, None)

    ids = enqueue_many(api, node, WORK, [{"ms": 30} for _ in range(30)])

    def done(of: Sequence[int]) -> Callable[[], bool]:
        return lambda: all(
            api.get(f"{node.url}/tasks/{i}").json()["state"] == "succeeded" for i in of
        )

    wait_until(done(ids), timeout=20, interval=0.2, what="30 succeeded")
    found = runs(log_dir)
    assert most_at_once(found) == 2
    assert sorted(r.id for r in found) == sorted(ids)

    paused = cli("pause", "limit:pair", "--for", "1h", *flags)
    assert paused.returncode == 0, paused.stderr
    wait_until(lambda: kind_held(node, WORK) == "limit:pair", timeout=1, what="the pause heard")
    held = enqueue_many(api, node, WORK, [{"ms": 5}])
    task = api.get(f"{node.url}/tasks/{held[0]}").json()
    assert task["state"] == "pending"
    assert any(w.startswith("paused (limit:pair, by cli:") for w in task["waiting"]), task
    assert cli("resume", "limit:pair", *flags).returncode == 0
    wait_until(done(held), timeout=1.5, what="claimed again after the resume")
    code, log = node.stop()
    assert code == 0, log
