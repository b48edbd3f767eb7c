"""huggingface: Hugging Face Inference API calls on the daemon's own HTTP session.

Kind ``huggingface.inference``, payload ``{"model": "org/name", "inputs": ...,
"parameters": {...}}`` → the model's JSON answer (or, for binary output such as an
image, ``{"content_type", "base64"}``). ``POST {base_url}/models/{model}`` with the token
as ``Authorization: Bearer``.

``[plugins.huggingface]``: ``token`` (``token_env`` / ``token_file``), optionally
``base_url`` (default the serverless endpoint; a dedicated Inference Endpoint URL works too)
and ``wait_for_model``.

A model that is still loading answers 503 with ``estimated_time``: after the transport's
own retries the task is retried after that estimate instead of a blind backoff.
"""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from gladd import RetryLater, TaskContext
from gladd.plugins import Plugin, ServiceUnavailable, TaskKind, raise_for_status

SERVICE = "huggingface"
AUTH_HINT = "check [plugins.huggingface] token (token_env / token_file)"
MAX_BINARY = 8 * 1024 * 1024


class Settings(BaseModel):
    """``[plugins.huggingface]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr
    base_url: str = "https://router.huggingface.co/hf-inference"
    wait_for_model: bool = False

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class Inference(BaseModel):
    """The payload of ``huggingface.inference``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
    inputs: Any
    parameters: dict[str, Any] = {}


async def inference(ctx: TaskContext, payload: Inference) -> Any:
    settings: Settings = ctx.settings
    body: dict[str, Any] = {"inputs": payload.inputs}
    if payload.parameters:
        body["parameters"] = payload.parameters
    if settings.wait_for_model:
        body["options"] = {"wait_for_model": True}
    response = await ctx.http[SERVICE].post(
        f"{settings.base_url}/models/{payload.model}",
        json=body,
        headers={"Authorization": f"Bearer {settings.token.get_secret_value()}"},
    )
    try:
        raise_for_status(response, auth_hint=AUTH_HINT)
    except ServiceUnavailable as exc:
        loading = _estimated_time(response)
        if loading is not None and exc.retry_after is None:
            raise RetryLater(loading, f"{exc} (model loading, about {loading:.0f}s)") from exc
        raise
    content_type = response.headers.get("content-type", "")
    if "json" in content_type:
        return response.json()
    if len(response.content) > MAX_BINARY:
        raise ValueError(f"huggingface: {payload.model} answered {len(response.content)} bytes")
    return {"content_type": content_type, "base64": base64.b64encode(response.content).decode()}


def _estimated_time(response: Any) -> float | None:
    try:
        estimate = response.json().get("estimated_time")
    except (ValueError, AttributeError):
        return None
    return float(estimate) if isinstance(estimate, int | float) else None


plugin = Plugin(
    name="huggingface",
    description="Hugging Face Inference API calls",
    services=(SERVICE,),
    settings=Settings,
    kinds=[TaskKind(name="huggingface.inference", handler=inference, payload=Inference)],
)
