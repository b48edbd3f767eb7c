"""The ``github`` plugin against a local GitHub API: calls, failures and token lifetimes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from gladd.policies import Policies
from gladd.resilience import BreakerState
from gladd.store import TaskState
from tests.integration.fakes import github
from tests.integration.fakes.harness import policies_for, running
from tests.integration.fakes.server import Faults, serve

pytestmark = pytest.mark.anyio

FAULTS = Faults()
STATE = github.GitHubState()
TOKEN = "ghp_valid"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(github.app(FAULTS, STATE)) as url:
        yield url


@pytest.fixture
def url(server: str) -> str:
    FAULTS.reset()
    STATE.tokens.clear()
    STATE.tokens[TOKEN] = None
    STATE.refresh_tokens.clear()
    STATE.used_tokens.clear()
    STATE.refreshes = 0
    return server


def policies(url: str, settings: str = 'token_env = "GH_TOKEN"') -> Policies:
    extra = f'\n[plugins.github]\nbase_url = "{url}"\noauth_url = "{url}"\n{settings}\n'
    return policies_for("github", extra=extra)


ENV = {"GH_TOKEN": TOKEN}
USER = {"path": "/user"}


async def test_success_with_a_token_from_the_environment(url: str, tmp_path: Path) -> None:
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("github.request", USER)
    assert task.state is TaskState.SUCCEEDED, task.errors
    assert task.result is not None
    assert task.result["body"]["login"] == "octocat"
    assert task.result["rate_limit"]["remaining"] == "4999"
    assert FAULTS.seen[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_token_from_a_file_and_a_created_issue(url: str, tmp_path: Path) -> None:
    secret = tmp_path / "github-token"
    secret.write_text(TOKEN + "\n")
    p = policies(url, f'token_file = "{secret}"')
    async with running(p, tmp_path, {}) as run:
        payload = {"method": "POST", "path": "/repos/o/r/issues", "json": {"title": "Hi"}}
        task = await run.run("github.request", payload)
        invalid = await run.run("github.request", {**payload, "json": {}})
        missing = await run.run("github.request", {"path": "/repos/o/missing/issues"})
    assert (task.state, task.result and task.result["status"]) == (TaskState.SUCCEEDED, 201)
    assert invalid.state is TaskState.DEAD
    assert invalid.errors[0].message == "github: service github answered 422 Validation Failed"
    assert missing.state is TaskState.DEAD
    assert missing.errors[0].message == "github: service github answered 404 Not Found"


async def test_5xx_then_success_is_retried(url: str, tmp_path: Path) -> None:
    FAULTS.script = [502]
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("github.request", USER)
    assert (task.state, task.attempt, FAULTS.count()) == (TaskState.SUCCEEDED, 1, 2)


async def test_429_with_retry_after_is_honoured(url: str, tmp_path: Path) -> None:
    FAULTS.script = [429]
    started = time.monotonic()
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("github.request", USER)
    assert (task.state, task.attempt, FAULTS.count()) == (TaskState.SUCCEEDED, 1, 2)
    assert time.monotonic() - started >= 0.95


async def test_hang_times_out_then_the_task_retries(url: str, tmp_path: Path) -> None:
    FAULTS.script = ["hang", "hang"]
    async with running(policies(url), tmp_path, ENV) as run:
        task = await run.run("github.request", USER)
    assert (task.state, task.attempt) == (TaskState.SUCCEEDED, 2)
    assert task.errors[0].message.startswith("github: service github did not answer in time")


async def test_breaker_opens_fails_fast_then_recovers(url: str, tmp_path: Path) -> None:
    FAULTS.always = 503
    FAULTS.retry_after = "0"
    async with running(policies(url), tmp_path, ENV) as run:
        await run.enqueue("github.request", USER)
        # The server counts a request before it answers: wait for the breaker itself.
        await _until(lambda: run.breaker_state("github") is BreakerState.OPEN)
        assert FAULTS.count() == 2  # opened by the threshold's two failures, no more
        second = await run.enqueue("github.request", USER)
        await anyio.sleep(0.1)
        assert FAULTS.count() == 2  # failed fast, nothing sent
        FAULTS.always = None
        assert (await run.wait(second)).state is TaskState.SUCCEEDED
        assert run.breaker_state("github") is BreakerState.CLOSED


async def test_an_open_service_breaker_postpones_its_tasks_in_the_executor(
    url: str, tmp_path: Path
) -> None:
    """With ``[tasks."github.request"] service = "github"`` the daemon's executor holds the
    kind's tasks back while the service's breaker is open: no attempt is spent on them."""
    FAULTS.always = 503
    FAULTS.retry_after = "0"
    p = policies_for(
        "github",
        extra=f'\n[plugins.github]\nbase_url = "{url}"\noauth_url = "{url}"\n'
        'token_env = "GH_TOKEN"\n[tasks."github.request"]\nservice = "github"\n',
    )
    async with running(p, tmp_path, ENV) as run:
        await run.enqueue("github.request", USER)
        await _until(lambda: run.breaker_state("github") is BreakerState.OPEN)
        held = await run.enqueue("github.request", USER)
        await _until(lambda: run.executor.statistics().postponed >= 1)
        FAULTS.always = None
        done = await run.wait(held)
    assert (done.state, done.attempt) == (TaskState.SUCCEEDED, 1)  # postponed, not spent


async def test_bad_credentials_are_dead_at_once(url: str, tmp_path: Path) -> None:
    async with running(policies(url), tmp_path, {"GH_TOKEN": "ghp_revoked"}) as run:
        task = await run.run("github.request", USER)
    assert (task.state, task.attempt, FAULTS.count()) == (TaskState.DEAD, 1, 1)
    assert task.errors[0].type == "gladd.plugins.errors.ServiceRefused"
    assert task.errors[0].message == (
        "github: service github answered 401 Bad credentials: "
        "check [plugins.github] token (token_env / token_file)"
    )


OAUTH = """token_env = "GH_TOKEN"
token_expires_at = {expires}
refresh_token_env = "GH_REFRESH"
client_id = "{client}"
client_secret_env = "GH_SECRET"
"""


def oauth(url: str, expires: datetime) -> Policies:
    settings = OAUTH.format(expires=expires.strftime("%Y-%m-%dT%H:%M:%SZ"), client=github.CLIENT_ID)
    return policies(url, settings)


async def test_an_expired_oauth_token_is_refreshed_never_used(url: str, tmp_path: Path) -> None:
    STATE.tokens[TOKEN] = time.time() - 60  # expired a minute ago
    STATE.refresh_tokens.add("ghr_first")
    env = {**ENV, "GH_REFRESH": "ghr_first", "GH_SECRET": github.CLIENT_SECRET}
    p = oauth(url, datetime.now(UTC) - timedelta(minutes=1))
    async with running(p, tmp_path, env) as run:
        first = await run.run("github.request", USER)
        second = await run.run("github.request", USER)
    assert first.state is second.state is TaskState.SUCCEEDED
    assert STATE.refreshes == 1
    assert TOKEN not in STATE.used_tokens
    assert STATE.used_tokens[0] == STATE.used_tokens[1]
    # The rotated refresh token survives a restart: no fall-back to the spent one.
    stored = tmp_path / "plugins" / "github" / "oauth.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert "ghr_first" not in stored.read_text()
    async with running(p, tmp_path, env) as run:
        assert (await run.run("github.request", USER)).state is TaskState.SUCCEEDED


async def test_expiry_read_from_the_api_header_triggers_a_refresh(url: str, tmp_path: Path) -> None:
    STATE.tokens[TOKEN] = time.time() + 30  # within the 300s refresh margin
    STATE.refresh_tokens.add("ghr_first")
    env = {**ENV, "GH_REFRESH": "ghr_first", "GH_SECRET": github.CLIENT_SECRET}
    p = policies(
        url,
        'token_env = "GH_TOKEN"\nrefresh_token_env = "GH_REFRESH"\n'
        f'client_id = "{github.CLIENT_ID}"\nclient_secret_env = "GH_SECRET"',
    )
    async with running(p, tmp_path, env) as run:
        await run.run("github.request", USER)  # learns the expiry from the header
        await run.run("github.request", USER)
    assert STATE.used_tokens[0] == TOKEN
    assert STATE.used_tokens[1] != TOKEN
    assert STATE.refreshes == 1


async def test_an_expired_token_without_refresh_fails_without_calling(
    url: str, tmp_path: Path
) -> None:
    p = policies(url, 'token_env = "GH_TOKEN"\ntoken_expires_at = 2020-01-01T00:00:00Z')
    async with running(p, tmp_path, ENV) as run:
        task = await run.run("github.request", USER)
    assert task.state is TaskState.DEAD
    assert FAULTS.count() == 0
    assert "the token expires 2020-01-01 00:00:00Z and no refresh_token" in task.errors[0].message


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
