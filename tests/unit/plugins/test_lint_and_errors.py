"""``gladd check``'s blocking-call warnings, and how handler errors leave the boundary."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gladd.errors import BreakerOpen
from gladd.executor.kinds import FailTask, RetryLater, Snooze
from gladd.plugins import (
    Plugin,
    PluginHost,
    ServiceRefused,
    ServiceUnavailable,
    TaskKind,
    blocking_call_warnings,
    discover_plugins,
    raise_for_status,
)
from gladd.plugins.api import SERVICE_EXTENSION
from gladd.plugins.boundary import boundary_error
from gladd.policies import parse_policies
from gladd.resilience import Resilience
from gladd.resilience.classify import DEFAULT_CLASSIFIER


async def bad(ctx: Any, payload: Any) -> None:
    time.sleep(1)
    urllib.request.urlopen("http://x")
    with open("/etc/hosts") as f:
        f.read()
    subprocess.run(["true"], check=True)
    httpx.Client()


async def fine(ctx: Any, payload: Any) -> None:
    await anyio.to_thread.run_sync(lambda: open("/etc/hosts").read())  # noqa: SIM115


def sync_ok(ctx: Any, payload: Any) -> None:
    time.sleep(1)


def test_blocking_calls_in_async_handlers_are_named_with_their_line() -> None:
    plugin = Plugin(
        name="t",
        kinds=[
            TaskKind(name="t.bad", handler=bad),
            TaskKind(name="t.fine", handler=fine),
            TaskKind(name="t.sync", handler=sync_ok),
        ],
    )
    warnings = blocking_call_warnings([plugin])
    names = [w.split(" calls ")[1].split("(")[0] for w in warnings]
    assert names == [
        "time.sleep",
        "urllib.request.urlopen",
        "builtins.open",
        "subprocess.run",
        "httpx.Client",
    ]
    assert warnings[0].startswith(f"{__file__}:{bad.__code__.co_firstlineno + 1}: async handler")
    assert "use `await anyio.sleep(...)`" in warnings[0]


def test_the_shipped_plugins_block_nothing() -> None:
    p = parse_policies(
        b"[services.github]\n[services.cloudinary]\n[services.huggingface]\n", source="t"
    ).policies
    found = discover_plugins(p, entry_points=False, environ={})
    assert blocking_call_warnings(found.plugins) == []


def response(status: int, body: Any, **headers: str) -> httpx.Response:
    r = httpx.Response(status, json=body, headers=headers)
    r.extensions[SERVICE_EXTENSION] = "github"
    return r


def test_statuses_map_to_refused_or_unavailable() -> None:
    raise_for_status(response(200, {}))
    with pytest.raises(ServiceRefused) as refused:
        raise_for_status(response(401, {"message": "Bad credentials"}))
    error = boundary_error("github", refused.value)
    assert isinstance(error, FailTask)
    assert str(error) == (
        "github: service github answered 401 Bad credentials: "
        "check the credentials in [plugins.github]"
    )
    with pytest.raises(ServiceUnavailable) as unavailable:
        raise_for_status(response(503, {"error": {"message": "busy"}}))
    assert DEFAULT_CLASSIFIER.cause(unavailable.value) == "5xx"
    assert str(boundary_error("github", unavailable.value)) == (
        "github: service github answered 503 busy"
    )
    with pytest.raises(ServiceUnavailable) as limited:
        raise_for_status(response(429, {"error": "slow down"}, **{"Retry-After": "7"}))
    later = boundary_error("hf", limited.value)
    assert isinstance(later, RetryLater)
    assert later.seconds == 7


def test_an_open_breaker_postpones_and_transport_errors_name_the_service() -> None:
    snooze = boundary_error("github", BreakerOpen("api", "open", 2.5))
    assert isinstance(snooze, Snooze)
    assert snooze.seconds == 2.5
    request = httpx.Request("GET", "https://api.github.com/user")
    request.extensions[SERVICE_EXTENSION] = "github"
    error = boundary_error("github", httpx.ConnectError("refused", request=request))
    assert isinstance(error, httpx.ConnectError)
    assert str(error) == "github: service github could not be reached at api.github.com: refused"
    assert DEFAULT_CLASSIFIER.cause(error) == "connect"


def test_a_host_without_plugins_has_no_kinds(tmp_path: Path) -> None:
    p = parse_policies(b"", source="t").policies
    host = PluginHost([], lambda: p, Resilience(p), tmp_path, environ={})
    assert host.kinds() == []
    assert host.check(p) == []
