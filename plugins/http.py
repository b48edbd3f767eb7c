"""http: a webhook or any HTTP request as a task — the plugin operators use first.

Kind ``http.request``, payload::

    {"method": "POST", "url": "https://hooks.example.com/orders",
     "headers": {"X-Signature": "..."}, "json": {...},        # or "body": "raw text"
     "expect": [200, 201],                                    # default: any 2xx
     "service": "hooks"}                                      # default: by URL host

The request goes through the client of a ``[services.NAME]`` of policies.toml, so its
retry, timeouts, breaker and budget apply: the one named by ``"service"``, else the one
whose ``hosts`` lists the URL's host (``"api.example.com"``, ``"*.example.com"`` or
``"127.0.0.1:8080"``), else ``[plugins.http] default_service``. A URL no service claims is
refused: gladd never calls a host without policies. The rule is known at enqueue, so such a
task is refused then (``check``), not stored to die on its first attempt; a reload that
unbinds the host later still fails the task at its attempt, with the same message.

The result is ``{"status", "service", "headers", "body"}``, the body parsed when it is JSON
and cut at ``[plugins.http] max_body`` bytes. A status outside ``expect`` fails the task:
retried when retrying can help (5xx, 429, 408), dead otherwise, with the service's message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gladd import FailTask, TaskContext
from gladd.plugins import ANY_SERVICE, EnqueueContext, Plugin, TaskKind, raise_for_status
from gladd.policies import ServiceBinding

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Request(BaseModel):
    """The payload of ``http.request``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    method: Method = "POST"
    url: str
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    json_body: Any = Field(None, alias="json")
    body: str | None = None
    expect: tuple[int, ...] = ()
    service: str | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _absolute_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @field_validator("expect")
    @classmethod
    def _statuses(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 100 <= status <= 599 for status in value):
            raise ValueError("statuses are between 100 and 599")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> Request:
        if self.json_body is not None and self.body is not None:
            raise ValueError('give "json" or "body", not both')
        return self


class Settings(BaseModel):
    """``[plugins.http]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_service: str | None = None
    """The service of URLs no ``hosts`` list claims (unset: such URLs are refused)."""
    max_body: int = Field(64 * 1024, ge=0, le=16 * 1024 * 1024)
    """Bytes of the response body kept in the task's result."""


def service_for(
    payload: Request, services: Mapping[str, ServiceBinding], settings: Settings | None
) -> str:
    """The service ``payload`` goes through, or ValueError saying how to bind one."""
    if payload.service is not None:
        if payload.service not in services:
            known = ", ".join(sorted(services)) or "none"
            raise ValueError(
                f"http: no [services.{payload.service}] in policies.toml (services: {known})"
            )
        return payload.service
    parts = urlsplit(payload.url)
    host = (parts.hostname or "").lower()
    for name, binding in sorted(services.items()):
        if any(_claims(pattern.lower(), host, parts.port) for pattern in binding.hosts):
            return name
    default = settings.default_service if settings is not None else None
    if default is not None and default in services:
        return default
    unbound = f" (default_service {default!r} has no [services.{default}])" if default else ""
    raise ValueError(
        f"http: no service claims host {host}{unbound}: add it to the hosts of a "
        '[services.NAME] in policies.toml, name one with "service" in the payload, or set '
        "[plugins.http] default_service"
    )


def pick_service(ctx: TaskContext, payload: Request) -> str:
    """The service ``payload`` goes through now, or FailTask saying how to bind one."""
    try:
        return service_for(payload, ctx.services, ctx.settings)
    except ValueError as exc:
        raise FailTask(str(exc)) from None


def check(ctx: EnqueueContext, payload: Request) -> None:
    """At enqueue: refuse a request no service would take (``service_for``'s message)."""
    service_for(payload, ctx.services, ctx.settings)


def _claims(pattern: str, host: str, port: int | None) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern in (host, f"{host}:{port}")


async def request(ctx: TaskContext, payload: Request) -> dict[str, Any]:
    service = pick_service(ctx, payload)
    settings: Settings = ctx.settings
    response = await ctx.http[service].request(
        payload.method,
        payload.url,
        headers=payload.headers,
        params=payload.params,
        json=payload.json_body,
        content=payload.body,
    )
    raise_for_status(
        response, expect=payload.expect, auth_hint="check the credentials in the task's headers"
    )
    ctx.logger.info(
        "http: {} {} → {} via service {}",
        payload.method,
        payload.url,
        response.status_code,
        service,
    )
    return {
        "status": response.status_code,
        "service": service,
        "headers": {"content-type": response.headers.get("content-type", "")},
        "body": _body(response.content, response.headers.get("content-type", ""), settings),
    }


def _body(content: bytes, content_type: str, settings: Settings) -> Any:
    if "json" in content_type and len(content) <= settings.max_body:
        try:
            return json.loads(content)
        except ValueError:
            pass
    return content[: settings.max_body].decode("utf-8", errors="replace")


plugin = Plugin(
    name="http",
    description="HTTP requests and webhooks through the services of policies.toml",
    services=(ANY_SERVICE,),
    settings=Settings,
    kinds=[
        TaskKind(
            name="http.request",
            handler=request,
            payload=Request,
            check=check,
            description="send one HTTP request; the result holds status, headers and body",
        )
    ],
)
