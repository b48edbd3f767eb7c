"""flowprobe: the test plugin of tests/e2e/test_flow_e2e.py — handlers that record when they
ran, so the tests can check limits from the intervals every node recorded.

Each attempt appends two JSON lines to ``LOG_DIR/PID.jsonl`` (``[plugins.flowprobe]
log_dir``): ``{"ev": "start", ...}`` as the handler begins and ``{"ev": "end", ...}`` as it
returns or raises, with the task's id, kind, attempt, the claim's time (``claimed``: the
``updated_at`` the claim wrote) and the wall-clock time. A line is one ``write`` to a file
opened with ``O_APPEND``: whole lines, never interleaved.

Kinds: ``flowprobe.work`` and ``flowprobe.other`` sleep ``ms`` milliseconds; ``flowcall.fetch``
(its own plugin, ``flowcall``, bound to ``[services.flaky]``) GETs ``[plugins.flowcall]
base_url`` through the service's client and fails on a bad answer.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from gladd import TaskContext
from gladd.plugins import Plugin, TaskKind


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    log_dir: str


class Work(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ms: float = 30.0
    tag: str = ""


def record(ctx: TaskContext, log_dir: str, event: str, **extra: Any) -> None:
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


async def work(ctx: TaskContext, payload: Work) -> dict[str, Any]:
    log_dir = ctx.settings.log_dir
    record(ctx, log_dir, "start")
    outcome = "error"
    try:
        await anyio.sleep(payload.ms / 1000)
        outcome = "ok"
        return {"slept_ms": payload.ms}
    finally:
        record(ctx, log_dir, "end", outcome=outcome)


plugin = Plugin(
    name="flowprobe",
    description="records each attempt's start and end (tests of flow control)",
    settings=Settings,
    kinds=[
        TaskKind(name="flowprobe.work", handler=work, payload=Work),
        TaskKind(name="flowprobe.other", handler=work, payload=Work),
    ],
)
