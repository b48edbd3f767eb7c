"""A reload through the real daemon's subsystems: all of them take the new rules, or none.

The daemon is built in-process on a real SQLite store and the shipped plugins, its plugin
host serving (so services have real HTTP clients) and its reloader running. Each test makes
one subsystem's preparation fail, as it would on a real machine (a store refusing the new
``[database]``, a client that cannot be built, a retry plan refused), and checks that
nothing was half-applied: the old generation is still served by every subsystem and every
surface says so truthfully.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from gladd.daemon import Daemon
from gladd.notify import Notifier
from gladd.observe.health import Status
from gladd.plugins.host import PluginHost
from gladd.policies import load_policies
from gladd.policies.model import DatabasePolicy, RetryPolicy
from gladd.reload.reloader import ReloadResult
from gladd.resilience.retry import RetryPlan
from gladd.runtime import LAST_GOOD
from gladd.settings import Settings
from gladd.store.sqlite.store import SQLiteStore
from tests.integration.fakes.harness import admin_client

pytestmark = pytest.mark.anyio

SHIPPED = (Path(__file__).resolve().parents[2] / "policies.toml").read_text()
# One edit per subsystem: the database's retry policy (resilience), the service's attempt
# timeout (resilience and its plugin client) and the query timeout (the store).
NEW = (
    SHIPPED.replace(
        "[retry.db]\n# Attempts, counting the first call.\nattempts = 3",
        "[retry.db]\n# Attempts, counting the first call.\nattempts = 7",
        1,
    )
    .replace('timeout = "10s"\n# URL hosts', 'timeout = "4s"\n# URL hosts')
    .replace('query_timeout = "5s"', 'query_timeout = "2s"')
)


@pytest.fixture
def policies_file(tmp_path: Path) -> Path:
    assert NEW.count("attempts = 7") == 1
    assert 'timeout = "4s"' in NEW
    assert '"2s"' in NEW
    path = tmp_path / "policies.toml"
    path.write_text(SHIPPED)
    return path


@asynccontextmanager
async def running(tmp_path: Path, policies: Path) -> AsyncIterator[Daemon]:
    settings = Settings(policies=policies, state_dir=tmp_path / "state")
    daemon = Daemon(settings, load_policies(policies), Notifier(None))
    settings.state_dir.mkdir()
    (settings.state_dir / LAST_GOOD).write_text(SHIPPED)
    daemon.runtime.load_plugins()  # as the daemon's start-up does
    async with anyio.create_task_group() as tg, daemon.runtime.plugins.serving():
        await tg.start(daemon.runtime.reloader.run)
        yield daemon
        tg.cancel_scope.cancel()


def metric(daemon: Daemon, name: str) -> float:
    body = daemon.runtime.metrics.render()[0].decode()
    (line,) = [line for line in body.splitlines() if line.startswith(name + " ")]
    return float(line.split()[-1])


def check(daemon: Daemon, key: str) -> dict[str, Any]:
    (found,) = daemon.runtime.board.report()["checks"][key]
    return found  # type: ignore[no-any-return]


def assert_old_generation_served(daemon: Daemon, result: ReloadResult, what: str) -> None:
    assert (result.outcome, result.generation) == ("rejected", 1)
    (error,) = result.errors
    assert error.startswith(
        f"{daemon.runtime.reloader.path}: {what} could not take these policies ("
    )
    # Every subsystem still runs the old rules: nothing was half-applied.
    assert daemon.runtime.served.generation == 1
    assert daemon.runtime.resilience.policies is daemon.policies()
    assert daemon.policies().database.query_timeout == 5.0
    db_retry = daemon.runtime.resilience.database().retry
    assert db_retry is not None
    assert db_retry.attempts == 3
    assert daemon.runtime.resilience.service("example").timeout == 10.0
    assert daemon.runtime.plugins.clients()["example"] is not None
    assert (daemon.settings.state_dir / LAST_GOOD).read_text() == SHIPPED
    # ... and every surface says so.
    generation = check(daemon, "policies:generation")
    assert (generation["status"], generation["observedValue"]) == ("warn", 1)
    assert error in generation["output"]
    assert check(daemon, "policies:reload")["observedValue"] == "rejected"
    assert metric(daemon, "gladd_policies_generation") == 1
    assert metric(daemon, "gladd_reload_last_success") == 0


async def assert_applies_once_fixed(daemon: Daemon) -> None:
    result = await daemon.runtime.reloader.reload("api")
    assert (result.outcome, result.generation) == ("applied", 2), result.errors
    assert daemon.runtime.resilience.policies is daemon.policies()
    db_retry = daemon.runtime.resilience.database().retry
    assert db_retry is not None
    assert db_retry.attempts == 7
    assert daemon.runtime.resilience.service("example").timeout == 4.0
    assert (daemon.settings.state_dir / LAST_GOOD).read_text() == NEW
    assert check(daemon, "policies:generation")["status"] == "pass"
    assert metric(daemon, "gladd_reload_last_success") == 1


async def test_a_resilience_engine_that_refuses_the_rules_changes_nothing(
    tmp_path: Path, policies_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = RetryPlan.from_policy.__func__  # type: ignore[attr-defined]

    def refusing(cls: type[RetryPlan], name: str, policy: RetryPolicy) -> RetryPlan:
        if policy.attempts == 7:
            raise ValueError("retry.db: this plan cannot be built")
        return real(cls, name, policy)  # type: ignore[no-any-return]

    async with running(tmp_path, policies_file) as daemon:
        monkeypatch.setattr(RetryPlan, "from_policy", classmethod(refusing))
        policies_file.write_text(NEW)
        result = await daemon.runtime.reloader.reload("api")
        assert_old_generation_served(daemon, result, "the resilience engine")
        monkeypatch.undo()
        await assert_applies_once_fixed(daemon)


async def test_a_store_that_cannot_be_retuned_changes_nothing(
    tmp_path: Path, policies_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refusing(self: SQLiteStore, database: DatabasePolicy) -> Callable[[], None]:
        raise ValueError("database.query_timeout: this store cannot take it now")

    async with running(tmp_path, policies_file) as daemon:
        monkeypatch.setattr(SQLiteStore, "prepare_retune", refusing)
        policies_file.write_text(NEW)
        result = await daemon.runtime.reloader.reload("api")
        assert_old_generation_served(daemon, result, "the task store")
        assert "database.query_timeout: this store cannot take it now" in result.errors[0]
        monkeypatch.undo()
        await assert_applies_once_fixed(daemon)


async def test_plugin_clients_that_cannot_be_built_change_nothing(
    tmp_path: Path, policies_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real: Callable[..., Any] = PluginHost._open

    def refusing(self: PluginHost, service: str, *args: Any) -> Any:
        raise OSError(f"no client for {service}: cannot load the CA bundle")

    async with running(tmp_path, policies_file) as daemon:
        before = daemon.runtime.plugins.clients()["example"]
        monkeypatch.setattr(PluginHost, "_open", refusing)
        policies_file.write_text(NEW)
        result = await daemon.runtime.reloader.reload("api")
        assert_old_generation_served(daemon, result, "the plugins")
        assert daemon.runtime.plugins.clients()["example"] is before
        assert not before.is_closed
        monkeypatch.setattr(PluginHost, "_open", real)
        await assert_applies_once_fixed(daemon)
        assert daemon.runtime.plugins.clients()["example"] is not before


async def test_clients_built_before_one_that_cannot_be_are_closed(
    tmp_path: Path, policies_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real: Callable[..., Any] = PluginHost._open
    built: list[Any] = []

    def second_refused(self: PluginHost, service: str, *args: Any) -> Any:
        if built:
            raise OSError(f"no client for {service}: cannot load the CA bundle")
        lease = real(self, service, *args)
        built.append(lease.client)
        return lease

    # A second service for the http plugin, and a changed first one: two clients to build.
    two = (
        NEW + '\n[services.other]\nretry = "http"\nbreaker = "default"\nhosts = ["other.invalid"]\n'
    )
    async with running(tmp_path, policies_file) as daemon:
        monkeypatch.setattr(PluginHost, "_open", second_refused)
        policies_file.write_text(two)
        result = await daemon.runtime.reloader.reload("api")
        assert_old_generation_served(daemon, result, "the plugins")
        (unused,) = built
        with anyio.fail_after(5):
            while not unused.is_closed:
                await anyio.sleep(0.01)


async def test_putting_the_file_back_clears_every_surface(
    tmp_path: Path, policies_file: Path
) -> None:
    async with running(tmp_path, policies_file) as daemon:
        policies_file.write_text(SHIPPED.replace("concurrency = 10", "concurrency = 0"))
        assert (await daemon.runtime.reloader.reload("api")).outcome == "rejected"
        assert metric(daemon, "gladd_reload_last_success") == 0

        policies_file.write_text(SHIPPED)
        rt = daemon.runtime
        async with admin_client(rt) as client:
            answer = await client.post("/reload")
        assert answer.status_code == 200
        back = answer.json()
        assert (back["outcome"], back["resolved"], back["generation"]) == ("unchanged", True, 1)
        assert "no longer stands" in back["summary"]
        generation = check(daemon, "policies:generation")
        assert (generation["status"], generation["observedValue"]) == (Status.PASS, 1)
        last = check(daemon, "policies:reload")
        assert last["observedValue"] == "unchanged"
        assert "no longer stands" in last["output"]
        assert metric(daemon, "gladd_reload_last_success") == 1
        warned = [
            k
            for k, v in daemon.runtime.board.report()["checks"].items()
            if v[0]["status"] != "pass"
        ]
        assert not [k for k in warned if k.startswith("policies:")]
