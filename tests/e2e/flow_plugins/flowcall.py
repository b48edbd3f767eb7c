"""flowcall: a test plugin calling ``[services.flaky]`` (tests/e2e/test_flow_e2e.py).

``flowcall.fetch`` GETs ``[plugins.flowcall] base_url`` through the service's client (its
policies, its cooldown) and records its start and end as ``flowprobe`` does.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from gladd import TaskContext
from gladd.plugins import Plugin, TaskKind, raise_for_status


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    log_dir: str
    base_url: str


class Fetch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = "/"


def record(ctx: TaskContext, log_dir: str, event: str, **extra: Any) -> None:
    """As ``flowprobe.record`` (each plugin module is imported on its own)."""
    line = {
        "ev": event,
        "id": ctx.task.id,
        "kind": ctx.task.kind,
        "attempt": ctx.task.attempt,
        "claimed": ctx.task.updated_at.timestamp(),
        "t": time.time(),
        "pid": os.getpid(),
        **extra,
    }
    fd = os.open(
        os.path.join(log_dir, f"{os.getpid()}.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


async def fetch(ctx: TaskContext, payload: Fetch) -> dict[str, Any]:
    settings: Settings = ctx.settings
    record(ctx, settings.log_dir, "start")
    outcome = "error"
    try:
        response = await ctx.http["flaky"].get(settings.base_url + payload.path)
        raise_for_status(response)
        outcome = "ok"
        return {"status": response.status_code}
    except BaseException as exc:
        outcome = f"error:{type(exc).__name__}"
        raise
    finally:
        record(ctx, settings.log_dir, "end", outcome=outcome)


plugin = Plugin(
    name="flowcall",
    description="GETs [services.flaky] and records it (tests of flow control)",
    services=("flaky",),
    settings=Settings,
    kinds=[TaskKind(name="flowcall.fetch", handler=fetch, payload=Fetch)],
)
