"""waitprobe: the test plugin of tests/e2e/test_wait_e2e.py — a handler that reports its
progress step by step, and fails when told to.

``waitprobe.steps`` takes ``{"steps": N, "ms": M, "fail": false}``: N steps of M
milliseconds each, ``ctx.progress(i / N, "step i of N")`` after each; then it returns
``{"steps": N}``, or raises FailTask when ``fail`` is true.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel, ConfigDict

from gladd import FailTask, TaskContext
from gladd.plugins import Plugin, TaskKind


class Steps(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = 5
    ms: float = 100.0
    fail: bool = False


async def steps(ctx: TaskContext, payload: Steps) -> dict[str, int]:
    for step in range(1, payload.steps + 1):
        await anyio.sleep(payload.ms / 1000)
        ctx.progress(step / payload.steps, f"step {step} of {payload.steps}")
    if payload.fail:
        raise FailTask("told to fail")
    return {"steps": payload.steps}


plugin = Plugin(
    name="waitprobe",
    kinds=[TaskKind(name="waitprobe.steps", handler=steps, payload=Steps)],
)
