"""The shipped plugins tested as a plugin author would test theirs: with gladd.testing.

(tests/integration/test_plugins_*.py run them against real local servers; these show the
few-line tests the kit allows, each service answered by a function.)
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gladd.errors import TaskRejected
from gladd.plugins import shipped_plugin_dir
from gladd.store import TaskState
from gladd.testing import EPOCH, PluginTest, TaskFailed

pytestmark = pytest.mark.anyio

SHIPPED = shipped_plugin_dir()

SERVICE = """
[executor]
retry = "task"

[retry.task]
attempts = 3
deadline = "1h"

[retry.api]
attempts = 2
backoff = "constant"
base_delay = "1s"
jitter = "none"

[services.{name}]
retry = "api"
timeout = "2s"
{more}
"""


def policies(name: str, settings: str, more: str = "") -> str:
    return SERVICE.format(name=name, more=more) + f"\n[plugins.{name}]\n{settings}\n"


GITHUB = policies("github", 'token_env = "GH_TOKEN"')


def github_user(request: httpx.Request) -> httpx.Response:
    if request.headers["authorization"] != "Bearer ghp_test":
        return httpx.Response(401, json={"message": "Bad credentials"})
    return httpx.Response(200, json={"login": "octocat"}, headers={"x-ratelimit-remaining": "9"})


async def test_github_calls_the_api_with_the_token_from_the_environment() -> None:
    env = {"GH_TOKEN": "ghp_test"}
    async with PluginTest(
        SHIPPED / "github.py", policies=GITHUB, services={"github": github_user}, environ=env
    ) as t:
        result = await t.run("github.request", {"path": "/user"})
        (sent,) = t.requests("github")
    assert result["body"] == {"login": "octocat"}
    assert result["rate_limit"]["remaining"] == "9"
    assert str(sent.url) == "https://api.github.com/user"


async def test_github_bad_credentials_are_dead_at_once_with_a_hint() -> None:
    env = {"GH_TOKEN": "ghp_revoked"}
    async with PluginTest(
        SHIPPED / "github.py", policies=GITHUB, services={"github": github_user}, environ=env
    ) as t:
        with pytest.raises(TaskFailed) as failed:
            await t.run("github.request", {"path": "/user"})
        assert len(t.requests("github")) == 1  # a 401 is not retried
    assert failed.value.task.state is TaskState.DEAD
    assert str(failed.value).endswith(
        "github: service github answered 401 Bad credentials: "
        "check [plugins.github] token (token_env / token_file)"
    )


HTTP = policies("http", "", more='hosts = ["hooks.example.com"]').replace(
    "[services.http]", "[services.hooks]"
)


async def test_http_posts_a_webhook_through_the_service_that_claims_its_host() -> None:
    def hooks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, json={"received": json.loads(request.content)})

    async with PluginTest(SHIPPED / "http.py", policies=HTTP, services={"hooks": hooks}) as t:
        result = await t.run(
            "http.request", {"url": "https://hooks.example.com/orders", "json": {"id": 7}}
        )
    assert (result["status"], result["service"]) == (202, "hooks")
    assert result["body"] == {"received": {"id": 7}}


async def test_http_refuses_at_enqueue_a_host_no_service_claims() -> None:
    async with PluginTest(SHIPPED / "http.py", policies=HTTP) as t:
        with pytest.raises(TaskRejected, match=r"http: no service claims host evil\.example\.org"):
            await t.enqueue("http.request", {"url": "https://evil.example.org/"})
        assert await t.store.list() == []


HUGGINGFACE = policies("huggingface", 'token_env = "HF_TOKEN"')


async def test_huggingface_retries_a_loading_model_after_its_estimate() -> None:
    answers = [
        httpx.Response(503, json={"error": "loading", "estimated_time": 20.0}),
        httpx.Response(200, json=[{"label": "POSITIVE", "score": 0.99}]),
    ]

    def model(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    async with PluginTest(
        SHIPPED / "huggingface.py",
        policies=HUGGINGFACE,
        services={"huggingface": model},
        environ={"HF_TOKEN": "hf_test"},
    ) as t:
        loading = await t.attempt("huggingface.inference", {"model": "org/m", "inputs": "hi"})
        assert loading.state is TaskState.PENDING
        assert loading.run_at - EPOCH >= timedelta(seconds=20)
        assert await t.run_due() == []  # not before the estimate
        t.advance(20)
        (done,) = await t.run_due()
        assert t.requests("huggingface")[0].headers["authorization"] == "Bearer hf_test"
    assert done.state is TaskState.SUCCEEDED
    assert done.result == [{"label": "POSITIVE", "score": 0.99}]


CLOUDINARY = policies(
    "cloudinary",
    'cloud_name = "demo"\napi_key = "123"\napi_secret_env = "CLOUDINARY_SECRET"',
    more="retry_non_idempotent = true  # an upload with the same public_id is idempotent",
)


async def test_cloudinary_uploads_the_whole_file_again_on_a_retry(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG" + bytes(range(256)) * 10)
    bodies: list[bytes] = []

    def upload(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if len(bodies) == 1:
            return httpx.Response(502)
        return httpx.Response(200, json={"public_id": "a", "bytes": image.stat().st_size})

    async with PluginTest(
        SHIPPED / "cloudinary.py",
        policies=CLOUDINARY,
        services={"cloudinary": upload},
        environ={"CLOUDINARY_SECRET": "s3cret"},
    ) as t:
        result = await t.run("cloudinary.upload", {"file": str(image), "public_id": "a"})
        sent = t.requests("cloudinary")
    assert result == {"public_id": "a", "bytes": image.stat().st_size}
    assert [str(r.url) for r in sent] == ["https://api.cloudinary.com/v1_1/demo/image/upload"] * 2
    assert all(image.read_bytes() in body for body in bodies)  # rewound, sent whole
    assert b'name="signature"' in bodies[1]
