"""``gladd check``, ``gladd reload`` and ``--version`` as an operator runs them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gladd import __version__
from gladd.store.sqlite.queries import Q
from gladd.store.sqlite.schema import migrations
from tests.e2e.conftest import Gladd, free_port, run_cli

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_check_accepts_the_shipped_file_and_summarises_it() -> None:
    result = run_cli("check", str(REPO / "policies.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{REPO / 'policies.toml'}: OK\n")
    assert "retry policies: db, http, task" in result.stdout
    assert "task timeout 15m" in result.stdout
    assert "query timeout 5s" in result.stdout


def test_check_defaults_to_the_configured_policies(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[retry.only]\n")
    result = run_cli("check", env={"GLADD_POLICIES": str(path)})
    assert result.returncode == 0, result.stderr
    assert "retry policies: only" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[executor\n", ":1:10: TOML syntax: Expected ']' at the end of a table declaration"),
        ("[retry.http]\nattempts = 0\n", ":2:12: retry.http.attempts: must be ≥ 1 (got 0)"),
        ('[executor]\nshutdown_grace = "soon"\n', ":2:18: executor.shutdown_grace: 'soon' is not"),
        ('[breaker.b]\nmode = "sometimes"\n', ":2:8: breaker.b.mode: must be one of"),
        ('[services.s]\nretry = "gone"\n', ":2:9: services.s.retry: no [retry.gone] is defined"),
    ],
)
def test_check_lists_every_problem_with_file_line_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "policies.toml"
    path.write_text(text)
    result = run_cli("check", str(path))
    assert result.returncode == 78
    assert f"{path}{expected}" in result.stderr
    assert result.stderr.rstrip().endswith(f"{path}: 1 problem")
    assert "Traceback" not in result.stderr


def test_check_on_a_missing_file(tmp_path: Path) -> None:
    result = run_cli("check", str(tmp_path / "nope.toml"))
    assert result.returncode == 78
    assert "nope.toml: file not found" in result.stderr


def test_version_and_python_dash_m() -> None:
    assert run_cli("--version").stdout.strip() == f"gladd {__version__}"
    result = subprocess.run(
        [sys.executable, "-m", "gladd", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"gladd {__version__}"


def test_no_command_prints_usage_and_exits_64() -> None:
    result = run_cli()
    assert result.returncode == 64
    assert "usage: gladd" in result.stderr


def test_reload_asks_the_running_daemon_and_prints_the_verdict(gladd: Gladd) -> None:
    gladd.start_ready()
    port = str(gladd.port)
    unchanged = run_cli("reload", "--admin-port", port)
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout.startswith("unchanged; serving generation 1")

    gladd.policies.write_text(gladd.policies.read_text().replace("attempts = 4", "attempts = 6"))
    applied = run_cli("reload", "--admin-port", port)
    assert applied.returncode == 0, applied.stderr
    # The file watcher may have applied the edit first; either way generation 2 is served.
    assert "retry.http.attempts 4 → 6" in applied.stdout or applied.stdout.startswith(
        "unchanged; serving generation 2"
    )

    gladd.policies.write_text("[executor]\nconcurrency = 0\n")
    rejected = run_cli("reload", "--admin-port", port)
    assert rejected.returncode == 78
    assert f"{gladd.policies}:2:15: executor.concurrency: must be ≥ 1 (got 0)" in rejected.stderr
    code, _ = gladd.stop()
    assert code == 0


def test_reload_without_a_daemon_says_so() -> None:
    result = run_cli("reload", "--admin-port", str(free_port()))
    assert result.returncode == 69
    assert "no gladd answering at http://127.0.0.1:" in result.stderr


def test_a_store_of_the_previous_schema_shows_what_is_pending_until_migrated(
    tmp_path: Path,
) -> None:
    db = tmp_path / "tasks.db"
    url = f"sqlite:///{db}"
    env = {"GLADD_POLICIES": str(REPO / "policies.toml")}
    conn = sqlite3.connect(db)
    conn.executescript(dict(migrations())[1])
    conn.executescript(Q["create_migrations_table"])
    conn.execute(Q["record_migration"], (1, 0))
    conn.commit()
    conn.close()
    latest = migrations()[-1][0]
    later = ", ".join(str(v) for v, _ in migrations()[1:])

    status = run_cli("db", "status", "--database-url", url, env=env)
    assert status.returncode == 0, status.stderr
    assert f"schema version 1 of {latest} known to this gladd" in status.stdout
    assert f"pending: {later} (`gladd db migrate` or the next `gladd run` applies them)" in (
        status.stdout
    )
    migrated = run_cli("db", "migrate", "--database-url", url, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"applied now: {later}" in migrated.stdout


def test_db_status_reports_pending_migrations_and_db_migrate_applies_them(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    url = f"sqlite:///{db}"
    env = {"GLADD_POLICIES": str(REPO / "policies.toml")}

    absent = run_cli("db", "status", "--database-url", url, env=env)
    assert absent.returncode == 69
    assert f"gladd: there is no SQLite database at {db} yet" in absent.stderr
    assert not db.exists()

    latest = migrations()[-1][0]
    migrated = run_cli("db", "migrate", "--database-url", url, env=env)
    assert migrated.returncode == 0, migrated.stderr
    every = ", ".join(str(v) for v, _ in migrations())
    assert f"applied now: {every}" in migrated.stdout

    status = run_cli("db", "status", "--database-url", url, env=env)
    assert status.returncode == 0, status.stderr
    assert f"schema version {latest} of {latest}" in status.stdout
    assert "pending:" not in status.stdout

    again = run_cli("db", "migrate", "--database-url", url, env=env)
    assert "applied now: none (already up to date)" in again.stdout
