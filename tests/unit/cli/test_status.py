"""``gladd status`` against a stand-in daemon: the summary, ``--json``, the exit codes."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gladd.cli.status import add_status_command, run_status, summarise
from gladd.settings import Settings


def check(status: str, value: Any = None, output: str | None = None) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"status": status, "time": "2024-01-01T00:00:00+00:00"}
    if value is not None:
        body["observedValue"] = value
    if output is not None:
        body["output"] = output
    return [body]


def breakers(*listed: tuple[str, str, str, float | None]) -> list[dict[str, Any]]:
    value = [{"breaker": b, "service": s, "state": st, "probeIn": p} for b, s, st, p in listed]
    return check("pass", value, "(the daemon's own wording)")


def report(status: str = "pass", **overrides: list[dict[str, Any]]) -> dict[str, Any]:
    checks = {
        "policies:generation": check("pass", 3, "/etc/gladd/policies.toml sha256 1a2b3c4d5e6f"),
        "policies:reload": check("pass", "applied", "applied (file), generation 3"),
        "database:responseTime": check("pass", 2.1),
        "database:connections": check(
            "pass", 3, "postgresql pool: 3 in use, 1 idle, size 4 of max 10, 0 waiting"
        ),
        "pool:alerts": check("pass", 0),
        "breakers:open": check("pass", 0, "2 breaker(s), all closed"),
        "executor:running": check("pass", 4, "4 of 10 slots"),
        "executor:queued": check("pass", 120),
        "executor:deadLastHour": check("pass", 0),
        "executor:timeoutRate": check("pass", 0.0),
        "eventloop:lag": check("pass", 1.2),
    }
    checks.update(overrides)
    return {"status": status, "version": "1.2.3", "serviceId": "web-1", "checks": checks}


class FakeDaemon:
    def __init__(self) -> None:
        self.body: Any = report()
        self.code = 200
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.headers.append(dict(self.headers))
                data = outer.body if isinstance(outer.body, bytes) else json.dumps(outer.body)
                payload = data if isinstance(data, bytes) else data.encode()
                self.send_response(outer.code)
                self.send_header("Content-Type", "application/health+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    fake = FakeDaemon()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gladd")
    commands = parser.add_subparsers()
    add_status_command(commands, lambda p: p.add_argument("--admin-port"), handler=lambda a: 0)
    return parser.parse_args(["status", *argv])


def test_the_summary_is_compact_and_names_the_problems() -> None:
    text = summarise(
        report(
            "warn",
            **{
                "breakers:open": check("warn", 1, "http for github (open, probe in 42s)"),
                "breakers:state": breakers(("http", "github", "open", 42)),
                "pool:alerts": check("warn", 1, "utilization warn (85%)"),
            },
        ),
        "http://127.0.0.1:8000",
    )
    assert text.splitlines() == [
        "gladd 1.2.3 on web-1 at http://127.0.0.1:8000: WARN",
        "  policies   generation 3 (/etc/gladd/policies.toml sha256 1a2b3c4d5e6f), last reload "
        "applied (file), generation 3",
        "  database   2.1 ms; postgresql pool: 3 in use, 1 idle, size 4 of max 10, 0 waiting",
        "  breakers   1: 1 open",
        "             http for github  open, probe in 42s",
        "  executor   4 of 10 slots running, 120 queued, 0 dead in the last hour, 0.0% timeouts",
        "  event loop lag 1.2 ms (peak since the last check)",
        "  alerts     2",
        "  WARN  breakers:open: http for github (open, probe in 42s)",
        "  WARN  pool:alerts: utilization warn (85%)",
    ]


def test_every_breaker_is_named_with_its_state_and_half_open_is_not_open() -> None:
    text = summarise(
        report(
            "warn",
            **{
                "breakers:open": check("warn", 3, "http for crm (half_open), ..."),
                "breakers:state": breakers(
                    ("db", "primary", "closed", None),
                    ("http", "crm", "half_open", None),
                    ("http", "github", "open", 42),
                    ("http", "legacy", "isolated", None),
                    ("http", "stripe", "closed", None),
                ),
            },
        )
    ).splitlines()
    start = text.index("  breakers   5: 1 isolated, 1 open, 1 half-open, 2 closed")
    assert text[start + 1 : start + 6] == [
        "             db for primary   closed",
        "             http for crm     half-open",
        "             http for github  open, probe in 42s",
        "             http for legacy  isolated",
        "             http for stripe  closed",
    ]
    assert text[start + 6].startswith("  executor   ")
    assert not any(line.startswith("  breakers   3 open") for line in text), "half-open is open"


def test_all_closed_breakers_are_still_named() -> None:
    text = summarise(report(**{"breakers:state": breakers(("http", "github", "closed", None))}))
    assert "  breakers   1: 1 closed" in text.splitlines()
    assert "             http for github  closed" in text.splitlines()
    none = summarise(report(**{"breakers:state": breakers()}))
    assert "  breakers   none built yet (each is built on first use)" in none.splitlines()


def test_an_older_daemon_s_breakers_are_counted_as_not_closed() -> None:
    text = summarise(
        report("warn", **{"breakers:open": check("warn", 1, "http for crm (half_open)")})
    )
    assert "  breakers   1 not closed: http for crm (half_open)" in text.splitlines()


def test_a_rejected_reload_is_named_once_with_its_errors_below() -> None:
    error = "/etc/gladd/policies.toml:16:15: executor.concurrency: must be ≥ 1 (got 0)"
    text = summarise(
        report(
            "warn",
            **{
                "policies:generation": check(
                    "warn", 3, f"last reload rejected, serving the last good rules: {error}"
                ),
                "policies:reload": check(
                    "pass", "rejected", f"rejected (file), generation 3: {error}"
                ),
            },
        )
    )
    lines = text.splitlines()
    assert (
        lines[1] == "  policies   generation 3, last reload rejected (the errors are listed below)"
    )
    assert lines[-1] == (
        f"  WARN  policies:generation: last reload rejected, serving the last good rules: {error}"
    )
    assert text.count(error) == 1


def test_an_unreachable_database_is_spelled_out() -> None:
    text = summarise(
        report("fail", **{"database:responseTime": check("fail", None, "connection refused")})
    )
    assert "  database   UNREACHABLE (connection refused);" in text
    assert text.endswith("  FAIL  database:responseTime: connection refused")


@pytest.mark.parametrize(("status", "code"), [("pass", 0), ("warn", 1), ("fail", 2)])
def test_exit_code_is_the_health(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str], status: str, code: int
) -> None:
    daemon.body = report(status)
    daemon.code = 503 if status == "fail" else 200
    assert run_status(parse("--url", daemon.url), Settings()) == code
    assert capsys.readouterr().out.startswith(f"gladd 1.2.3 on web-1 at {daemon.url}: ")


def test_json_prints_the_report_and_sends_the_token(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(admin_token="s3cret")  # type: ignore[arg-type]
    assert run_status(parse("--json", "--url", daemon.url + "/"), settings) == 0
    assert json.loads(capsys.readouterr().out) == daemon.body
    assert daemon.headers[0]["Authorization"] == "Bearer s3cret"


def test_settings_give_the_address(daemon: FakeDaemon) -> None:
    port = int(daemon.url.rsplit(":", 1)[1])
    settings = Settings(admin_host="127.0.0.1", admin_port=port)
    assert run_status(parse(), settings) == 0


def test_no_daemon_is_69_with_a_precise_message(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run_status(parse("--url", f"http://127.0.0.1:{port}"), Settings()) == 69
    assert capsys.readouterr().err == (
        f"gladd: no gladd answers at http://127.0.0.1:{port} (connection refused); is the "
        "daemon running, and listening there? (--url, or --admin-host / --admin-port / "
        "GLADD_ADMIN_PORT)\n"
    )


def test_something_else_on_the_port_is_69(
    daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon.body, daemon.code = b"<html>nginx</html>", 404
    assert run_status(parse("--url", daemon.url), Settings()) == 69
    assert "answered HTTP 404, but not with a gladd health report" in capsys.readouterr().err
