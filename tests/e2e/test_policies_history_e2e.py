"""The policies history through the real daemon: edit the real policies.toml (a valid
change, an invalid one, the fix) and see each generation, its trigger, its diff and the
last rejection — standing, then resolved — in ``GET /policies/history``, ``GET /policies``
and ``gladd policies history``; SIGHUP and ``POST /reload`` name their trigger."""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LoggedGladd, free_port, run_cli, wait_until
from tests.e2e.test_reload_e2e import (
    edit,
    start_watching_elsewhere,
    wait_logged,
    write_in_place,
)

pytestmark = pytest.mark.e2e

WATCHER = ("file", "poll")
"""An edit is seen by a file event, or (rarely, when it lands on it) by the 5 s check."""


@pytest.fixture
def gladd(tmp_path: Path) -> Iterator[LoggedGladd]:
    instance = LoggedGladd(tmp_path)
    yield instance
    instance.close()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def history(gladd: LoggedGladd, query: str = "") -> dict[str, Any]:
    response = gladd.get("/policies/history" + query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_history(gladd: LoggedGladd, what: str, done: Any) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = history(gladd)
        return body if done(body) else None

    try:
        return wait_until(reached, timeout=10, interval=0.05, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- gladd log ---\n{gladd.log()}") from None


def newest(body: dict[str, Any]) -> int:
    return int(body["generations"][0]["generation"])


def cli_history(gladd: LoggedGladd, *args: str) -> str:
    done = run_cli("policies", "history", "--admin-port", str(gladd.port), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_edits_fill_the_history_and_a_rejection_stands_until_fixed(gladd: LoggedGladd) -> None:
    shipped = gladd.policies.read_text()
    gladd.start_ready()
    wait_logged(gladd, "watching ")
    start = history(gladd)
    assert [g["trigger"] for g in start["generations"]] == ["start"]
    assert start["generations"][0]["sha256"] == sha(shipped)
    assert start["last_rejection"] is None

    # A valid change: generation 2, seen by the watcher, with its change and its diff.
    four = edit("concurrency = 10", "concurrency = 4", shipped)
    write_in_place(gladd.policies, four)
    body = wait_history(gladd, "generation 2", lambda b: newest(b) == 2)
    second = body["generations"][0]
    assert second["trigger"] in WATCHER
    assert second["sha256"] == sha(four)
    assert second["changes"] == ["executor.concurrency 10 → 4"]
    assert "\n-concurrency = 10\n+concurrency = 4\n" in second["diff"]
    assert second["diff"].startswith("--- generation 1\n+++ generation 2\n")

    # An invalid change: refused with its place in the file, standing; nothing new served.
    broken = edit("concurrency = 10", "concurrency = 0", shipped)
    write_in_place(gladd.policies, broken)
    line = broken.splitlines().index("concurrency = 0") + 1
    body = wait_history(gladd, "a rejection", lambda b: b["last_rejection"] is not None)
    rejection = body["last_rejection"]
    error = f"{gladd.policies}:{line}:15: executor.concurrency: must be ≥ 1 (got 0)"
    assert rejection["errors"] == [error]
    assert rejection["standing"] is True
    assert rejection["sha256"] == sha(broken)
    assert rejection["trigger"] in WATCHER
    assert rejection["generation_served"] == 2
    assert newest(body) == 2
    shown = cli_history(gladd)
    assert "STANDING: generation 2 is still served" in shown
    assert f"  {error}" in shown.splitlines()

    # The fix: generation 3, diffed against generation 2 (not the refused file); resolved.
    five = edit("concurrency = 10", "concurrency = 5", shipped)
    write_in_place(gladd.policies, five)
    body = wait_history(gladd, "generation 3", lambda b: newest(b) == 3)
    third = body["generations"][0]
    assert "\n-concurrency = 4\n+concurrency = 5\n" in third["diff"]
    assert third["changes"] == ["executor.concurrency 4 → 5"]
    assert [g["generation"] for g in body["generations"]] == [3, 2, 1]
    rejection = body["last_rejection"]
    assert rejection["standing"] is False
    assert rejection["resolved_by"] == "generation 3 applied"
    assert rejection["errors"] == [error]

    served = gladd.get("/policies").json()
    assert served["generation"] == 3
    assert served["path"] == str(gladd.policies)
    assert served["text"] == five
    assert served["sha256"] == sha(five) == third["sha256"]
    assert served["loaded_at"] == third["at"]

    shown = cli_history(gladd)
    blocks = shown.split("\n\n")
    assert blocks[0].startswith("generation 3  ")
    assert f"sha256 {sha(five)[:12]}" in blocks[0]
    assert "    +concurrency = 5" in blocks[0].splitlines()
    assert "resolved " in shown
    assert "(generation 3 applied)" in shown
    assert cli_history(gladd, "--json", "--limit", "1").count('"generation": ') == 1

    # Only the newest on ?limit=; a bad limit is a 400 that says what to give.
    assert [g["generation"] for g in history(gladd, "?limit=2")["generations"]] == [3, 2]
    for bad in ("0", "-1", "two", ""):
        refused = gladd.get(f"/policies/history?limit={bad}")
        assert refused.status_code == 400, bad
        assert "is not a whole number from 1" in refused.json()["error"]
    usage = run_cli("policies", "history", "--admin-port", str(gladd.port), "--limit", "0")
    assert usage.returncode == 64
    assert "--limit: limit='0' is not a whole number from 1" in usage.stderr


def test_sighup_and_post_reload_are_named_as_their_triggers(gladd: LoggedGladd) -> None:
    target = start_watching_elsewhere(gladd)
    assert gladd.process is not None
    shipped = target.read_text()

    write_in_place(target, edit("concurrency = 10", "concurrency = 3", shipped))
    gladd.process.send_signal(signal.SIGHUP)
    wait_history(gladd, "generation 2", lambda b: newest(b) == 2)

    write_in_place(target, edit("concurrency = 10", "concurrency = 7", shipped))
    answer = httpx.post(gladd.url + "/reload", timeout=10)
    assert answer.json()["generation"] == 3, answer.text

    write_in_place(target, "schema_version = 1\n[executor]\nconcurrency = 0\n")
    refused = run_cli("reload", "--admin-port", str(gladd.port))
    assert refused.returncode == 78

    body = history(gladd)
    assert [(g["generation"], g["trigger"]) for g in body["generations"]] == [
        (3, "api"),
        (2, "signal"),
        (1, "start"),
    ]
    assert body["last_rejection"]["trigger"] == "api"  # gladd reload asks POST /reload
    assert body["last_rejection"]["errors"] == [
        f"{gladd.policies}:3:15: executor.concurrency: must be ≥ 1 (got 0)"
    ]

    write_in_place(target, edit("concurrency = 10", "concurrency = 7", shipped))
    put_back = httpx.post(gladd.url + "/reload", timeout=10).json()
    assert put_back["resolved"] is True
    rejection = history(gladd)["last_rejection"]
    assert rejection["standing"] is False
    assert rejection["resolved_by"] == "the file put back to generation 3"


def test_a_start_from_the_last_good_copy_says_the_file_on_disk_is_refused(
    gladd: LoggedGladd,
) -> None:
    shipped = gladd.policies.read_text()
    gladd.start_ready()
    assert gladd.stop()[0] == 0
    broken = edit("concurrency = 10", "concurrency = 0", shipped)
    gladd.policies.write_text(broken)
    line = broken.splitlines().index("concurrency = 0") + 1

    gladd.start_ready("--use-last-good")
    body = history(gladd)
    (first,) = body["generations"]
    assert first["trigger"] == "start"
    assert first["source"] == str(gladd.state_dir / "policies.last-good.toml")
    assert first["sha256"] == sha(shipped)
    rejection = body["last_rejection"]
    assert rejection["standing"] is True
    # Recorded at start; the watcher's first look at the file refuses it again.
    assert rejection["trigger"] in ("start", "poll")
    assert rejection["errors"] == [
        f"{gladd.policies}:{line}:15: executor.concurrency: must be ≥ 1 (got 0)"
    ]

    five = edit("concurrency = 10", "concurrency = 5", shipped)
    write_in_place(gladd.policies, five)
    body = wait_history(gladd, "generation 2", lambda b: newest(b) == 2)
    assert "\n-concurrency = 10\n+concurrency = 5\n" in body["generations"][0]["diff"]
    assert body["last_rejection"]["resolved_by"] == "generation 2 applied"


def test_the_command_exits_69_when_no_daemon_answers() -> None:
    nobody = run_cli("policies", "history", "--admin-port", str(free_port()))
    assert nobody.returncode == 69
    assert "no gladd answers at http://127.0.0.1:" in nobody.stderr
    assert "Traceback" not in nobody.stderr
