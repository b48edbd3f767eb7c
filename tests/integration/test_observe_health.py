"""Health driven by real causes: pass → warn (a breaker opens against a failing local
server) → fail (the database goes away) → pass (both come back)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import anyio
import asyncpg
import httpx
import pytest

from gladd.policies import Policies
from gladd.store.postgres.store import PostgresStore
from tests.e2e._proxy import TcpProxy
from tests.unit.observe._build import Observed

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

POLICIES = Policies.model_validate(
    {
        "database": {"query_timeout": "1s", "retry": "db"},
        "retry": {"db": {"attempts": 3, "base_delay": "20ms", "jitter": "none"}},
        "breaker": {"flaky": {"failures": 2, "open_for": "60s"}},
        "services": {"billing": {"breaker": "flaky", "timeout": "2s"}},
    }
)


class Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/invoices"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    name = f"gladd_observe_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def settle(observed: Observed, expected: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        await observed.checker.check()
        if observed.board.report()["status"] == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"health never became {expected}: {observed.board.report()}")
        await anyio.sleep(0.05)


async def test_pass_warn_fail_pass(database: str, failing_server: str) -> None:
    server = urlsplit(database)
    with TcpProxy((server.hostname or "127.0.0.1", server.port or 5432)) as proxy:
        proxy.resume()
        # As in the daemon: store queries run under the [database] retry policy's guard.
        store = PostgresStore(
            proxy.url_for(database),
            query_timeout=1,
            guard=lambda call: observed.resilience.database().call(call),
        )
        observed = Observed(store=store, policies=POLICIES)
        await store.open()
        try:
            await settle(observed, "pass")

            transport = observed.resilience.transport("billing")
            async with httpx.AsyncClient(transport=transport) as client:
                for _ in range(2):
                    assert (await client.get(failing_server)).status_code == 503
            await settle(observed, "warn")
            check = observed.board.report()["checks"]["breakers:open"][0]
            assert check["output"].startswith("flaky for billing (open, probe in ")
            assert observed.board.ready() == (True, "ready")  # a sick upstream: still ready

            proxy.pause()
            await settle(observed, "fail")
            ping = observed.board.report()["checks"]["database:responseTime"][0]
            assert "PostgreSQL store" in ping["output"]
            assert observed.pings[-1] is not None  # what the daemon's readiness follows

            proxy.resume()
            observed.resilience.breakers()["flaky", "billing"].reset()
            await settle(observed, "pass")
            assert observed.pings[-1] is None
        finally:
            await store.close()
