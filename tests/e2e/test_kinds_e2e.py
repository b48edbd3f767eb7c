"""The real daemon publishes its kinds at start; an application's client validates against
them; ``GET /kinds`` shows them; a plugin removed leaves the catalogue at the next start."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import gladd
from tests.e2e.conftest import LoggedGladd, executor_policies

HUGGINGFACE = """
[services.huggingface]
timeout = "5s"
[plugins.huggingface]
token_env = "HF_TOKEN"
"""


def test_a_client_checks_the_kinds_the_daemon_published(
    nodes: Callable[[str], LoggedGladd], api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(extra=HUGGINGFACE))
    node.start_serving(GLADD_NODE_NAME="node-a", HF_TOKEN="t")
    url = f"sqlite:///{node.state_dir / 'gladd.db'}"

    shown = api.get(f"{node.url}/kinds").json()
    served = {k["name"]: k for k in shown["kinds"]}
    assert sorted(served) == ["gladd.noop", "gladd.sleep", "http.request", "huggingface.inference"]
    assert served["http.request"]["plugin"] == "http"
    assert served["http.request"]["payload_schema"]["required"] == ["url"]
    assert served["gladd.noop"]["payload_schema"] is None
    assert {(r["name"], r["node"]) for r in shown["catalogue"]} == {
        (name, "node-a") for name in served
    }

    with gladd.SyncClient(url, policies=node.policies) as client:
        task_id = client.enqueue("http.request", {"url": "https://example.invalid/x"})
        with pytest.raises(gladd.TaskRejected) as refused:
            client.enqueue("http.request", {"url": "https://example.invalid/x", "verb": "GET"})
    assert task_id > 0
    assert str(refused.value) == (
        "payload for http.request is invalid: verb: Extra inputs are not permitted"
    )
    node.stop()

    # The huggingface plugin's service removed: its kind leaves the node's publication.
    node.policies.write_text(executor_policies())
    node.start_serving(GLADD_NODE_NAME="node-a")
    with (
        gladd.SyncClient(url, policies=node.policies) as client,
        pytest.raises(gladd.TaskRejected) as unknown,
    ):
        client.enqueue("huggingface.inference", {"model": "m", "inputs": "hi"})
    assert str(unknown.value).startswith(
        "unknown task kind 'huggingface.inference': not in the catalogue the daemon published "
    )
    assert str(unknown.value).endswith(
        "(nodes: node-a); is its plugin configured, and has the daemon started since? "
        "(known kinds: gladd.noop, gladd.sleep, http.request)"
    )
    code, _ = node.stop()
    assert code == 0
