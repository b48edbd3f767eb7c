"""The fast commands start without the daemon's imports (issue 15): each runs in a fresh
interpreter, which then says which heavy packages it imported."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HEAVY = ("pydantic", "pydantic_settings", "httpx", "anyio", "asyncio", "loguru", "starlette")
PROBE = """
import json, sys
from gladd.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --version, --help
    code = exc.code
heavy = sorted(set(json.loads(sys.stdin.readline())) & set(sys.modules))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def heavy_imports(*argv: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        input=json.dumps(HEAVY) + "\n",
        env={**clean, "GLADD_ENV_FILE": "", **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    verdict = json.loads(done.stderr.strip().splitlines()[-1])
    return verdict["code"], verdict["heavy"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_version_and_help_import_nothing_heavy() -> None:
    assert heavy_imports("--version") == (0, [])
    assert heavy_imports("tasks", "enqueue", "--help") == (0, [])


def test_status_imports_nothing_heavy() -> None:
    assert heavy_imports("status", "--admin-port", str(free_port())) == (69, [])


def test_policies_history_imports_nothing_heavy() -> None:
    assert heavy_imports("policies", "history", "--admin-port", str(free_port())) == (69, [])


def test_status_with_an_env_file_imports_nothing_heavy(tmp_path: Path) -> None:
    env_file = tmp_path / "gladd.env"
    env_file.write_text(f"GLADD_ADMIN_PORT={free_port()}\nGLADD_ADMIN_TOKEN=t\n")
    assert heavy_imports("status", "--env-file", str(env_file)) == (69, [])


def test_settings_pydantic_would_refuse_get_its_message() -> None:
    code, heavy = heavy_imports("status", env={"GLADD_ADMIN_PORT": "banana"})
    assert (code, "pydantic_settings" in heavy) == (78, True)


def test_an_enqueue_answered_by_a_daemon_imports_nothing_heavy(tmp_path: Path) -> None:
    # What the daemon answers is not under test here (tests/e2e test that): only what the
    # command imported to send it.
    class Created(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"id": 7, "created": true}'
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Created)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = str(server.server_address[1])
        argv = (
            "tasks",
            "enqueue",
            "gladd.noop",
            "--admin-port",
            port,
            "--state-dir",
            str(tmp_path),
        )
        assert heavy_imports(*argv) == (0, [])
    finally:
        server.shutdown()
        server.server_close()


def test_a_repeated_check_imports_nothing_heavy(tmp_path: Path) -> None:
    """The first check is a full one; the second, inputs unchanged, replays its verdict
    through the real command tree without the policies model or any plugin."""
    policies = tmp_path / "policies.toml"
    policies.write_text("schema_version = 1\n")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first_code, first_heavy = heavy_imports("check", str(policies), env=env)
    assert first_code == 0
    assert "pydantic" in first_heavy
    assert heavy_imports("check", str(policies), env=env) == (0, [])
