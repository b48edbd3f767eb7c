"""github: GitHub REST API calls with a token that is never used expired.

Kind ``github.request``, payload ``{"method": "GET", "path": "/repos/OWNER/REPO/issues",
"params": {...}, "json": {...}, "expect": [200]}``; the result is
``{"status", "body", "rate_limit": {"remaining", "reset"}}``. Paths are relative to
``base_url``: the token is only ever sent to GitHub.

``[plugins.github]`` (and a ``[services.github]`` for its policies)::

    token_env = "GITHUB_TOKEN"              # or token_file = "/etc/gladd/github-token"
    # token_expires_at = 2030-01-01T00:00:00Z   # if known; else read from the API's
    #                                          # github-authentication-token-expiration header
    # OAuth (GitHub App user tokens): refreshed before they expire
    # refresh_token_file = "/etc/gladd/github-refresh-token"
    # client_id = "Iv1.0123456789abcdef"
    # client_secret_env = "GITHUB_CLIENT_SECRET"

The seed app used expired OAuth tokens. Here the expiry is tracked — from the settings,
the OAuth answer's ``expires_in`` and the API's expiration header — and a token within
``refresh_margin`` of it is refreshed first (one refresh at a time, however many tasks
wait), or, with no refresh token, the task fails with a message saying so. A 401 gets one
refresh and one retry; a rotated refresh token is kept in the plugin's data directory
(mode 0600) so a restart does not fall back to the spent one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gladd import FailTask, RetryLater, TaskContext
from gladd.plugins import Plugin, PluginRuntime, ServiceRefused, TaskKind, raise_for_status

SERVICE = "github"
AUTH_HINT = "check [plugins.github] token (token_env / token_file)"
EXPIRATION_HEADER = "github-authentication-token-expiration"


class Settings(BaseModel):
    """``[plugins.github]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = "https://api.github.com"
    oauth_url: str = "https://github.com"
    token: SecretStr | None = None
    token_expires_at: datetime | None = None
    refresh_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_margin: float = Field(300.0, ge=0, le=86400)
    """Seconds before expiry at which a token is refreshed (or refused)."""
    api_version: str = "2022-11-28"

    @field_validator("base_url", "oauth_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _some_credential(self) -> Settings:
        if self.refresh_token is not None and not (self.client_id and self.client_secret):
            raise ValueError("refresh_token needs client_id and client_secret too")
        if self.token is None and self.refresh_token is None:
            raise ValueError(
                "no credentials: set token (token_env / token_file), or refresh_token with "
                "client_id and client_secret"
            )
        return self


class Call(BaseModel):
    """The payload of ``github.request``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str
    params: dict[str, str | int] = {}
    json_body: Any = Field(None, alias="json")
    expect: tuple[int, ...] = ()

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("//") or "://" in value:
            raise ValueError("must be a path on the API, starting with / (e.g. /user)")
        return value


@dataclass
class Tokens:
    """The live credentials: what the settings gave, as refreshed since."""

    access: SecretStr | None
    expires_at: datetime | None
    refresh: SecretStr | None
    seeded_from: str
    store: Path | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    def expiring(self, margin: float, now: datetime) -> bool:
        return self.expires_at is not None and now + timedelta(seconds=margin) >= self.expires_at


def _fingerprint(settings: Settings) -> str:
    """Which configured secrets the live tokens started from (a hash: never the secret)."""
    parts = [s.get_secret_value() if s else "" for s in (settings.token, settings.refresh_token)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _seed(settings: Settings, store: Path | None) -> Tokens:
    return Tokens(
        access=settings.token,
        expires_at=settings.token_expires_at,
        refresh=settings.refresh_token,
        seeded_from=_fingerprint(settings),
        store=store,
    )


def _stored(tokens: Tokens) -> None:
    """Tokens a previous run refreshed from these same settings, if any."""
    if tokens.store is None or not tokens.store.is_file():
        return
    try:
        saved = json.loads(tokens.store.read_text())
    except (OSError, ValueError):
        return
    if saved.get("seeded_from") != tokens.seeded_from:
        return  # the operator configured new credentials since: theirs win
    tokens.access = SecretStr(saved["access"]) if saved.get("access") else tokens.access
    tokens.refresh = SecretStr(saved["refresh"]) if saved.get("refresh") else tokens.refresh
    expires = saved.get("expires_at")
    tokens.expires_at = datetime.fromisoformat(expires) if expires else None


def _save(tokens: Tokens) -> None:
    if tokens.store is None:
        return
    data = {
        "seeded_from": tokens.seeded_from,
        "access": tokens.access.get_secret_value() if tokens.access else None,
        "refresh": tokens.refresh.get_secret_value() if tokens.refresh else None,
        "expires_at": tokens.expires_at.isoformat() if tokens.expires_at else None,
    }
    temporary = tokens.store.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    temporary.replace(tokens.store)


async def start(runtime: PluginRuntime) -> None:
    tokens = _seed(runtime.settings, runtime.data_dir / "oauth.json")
    await anyio.to_thread.run_sync(_stored, tokens)
    runtime.state["tokens"] = tokens


def _tokens(ctx: TaskContext) -> Tokens:
    settings: Settings = ctx.settings
    tokens: Tokens | None = ctx.state.get("tokens")
    if tokens is None or tokens.seeded_from != _fingerprint(settings):
        # New credentials in policies.toml (a reload): start over from them.
        tokens = _seed(settings, tokens.store if tokens else None)
        ctx.state["tokens"] = tokens
    return tokens


async def _valid_token(
    ctx: TaskContext, tokens: Tokens, *, refused: SecretStr | None = None
) -> SecretStr:
    """A token good for ``refresh_margin`` more; ``refused`` is one the API just refused."""
    settings: Settings = ctx.settings
    async with tokens.lock:
        now = datetime.now(UTC)
        stale = refused is not None and tokens.access == refused  # nobody refreshed it yet
        if (
            tokens.access is not None
            and not stale
            and not tokens.expiring(settings.refresh_margin, now)
        ):
            return tokens.access
        if tokens.refresh is None:
            when = f"{tokens.expires_at:%Y-%m-%d %H:%M:%S}Z" if tokens.expires_at else "now"
            raise FailTask(
                f"github: service {SERVICE}: the token expires {when} and no refresh_token is "
                "configured: put a new token in [plugins.github] (token_env / token_file)"
            )
        await _refresh(ctx, tokens, settings)
        assert tokens.access is not None
        return tokens.access


async def _refresh(ctx: TaskContext, tokens: Tokens, settings: Settings) -> None:
    """RFC 6749 §6, as GitHub speaks it (errors come back as 200 with an ``error`` field)."""
    assert tokens.refresh is not None
    assert settings.client_secret is not None
    response = await ctx.http[SERVICE].post(
        f"{settings.oauth_url}/login/oauth/access_token",
        headers={"Accept": "application/json"},
        data={
            "client_id": settings.client_id or "",
            "client_secret": settings.client_secret.get_secret_value(),
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh.get_secret_value(),
        },
    )
    raise_for_status(response, auth_hint="check [plugins.github] client_id and client_secret")
    answer = response.json()
    if "access_token" not in answer:
        raise ServiceRefused(
            SERVICE,
            f"refused the token refresh: {answer.get('error', '?')}: "
            f"{answer.get('error_description', '')}",
            hint="configure a new refresh_token in [plugins.github]",
        )
    tokens.access = SecretStr(answer["access_token"])
    if answer.get("refresh_token"):
        tokens.refresh = SecretStr(answer["refresh_token"])
    expires_in = answer.get("expires_in")
    tokens.expires_at = (
        datetime.now(UTC) + timedelta(seconds=float(expires_in)) if expires_in else None
    )
    await anyio.to_thread.run_sync(_save, tokens)
    ctx.logger.info("github: access token refreshed, valid until {}", tokens.expires_at)


def _observe(tokens: Tokens, response: httpx.Response) -> None:
    """Learn the token's expiry from the API (``2030-01-01 00:00:00 UTC``)."""
    value = response.headers.get(EXPIRATION_HEADER)
    if not value:
        return
    try:
        moment = datetime.strptime(value.replace("UTC", "+0000"), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return
    tokens.expires_at = moment.astimezone(UTC)


def _rate_limited(response: httpx.Response) -> None:
    """GitHub's primary limit is a 403 (or 429) with X-RateLimit-Remaining: 0."""
    if response.status_code not in (403, 429):
        return
    remaining = response.headers.get("x-ratelimit-remaining")
    retry_after = response.headers.get("retry-after")
    if remaining == "0":
        reset = float(response.headers.get("x-ratelimit-reset", "0") or 0)
        wait = max(1.0, reset - datetime.now(UTC).timestamp())
    elif retry_after is not None and retry_after.isdigit():
        wait = float(retry_after)  # the secondary rate limit
    else:
        return
    raise RetryLater(wait, f"github: service {SERVICE} rate limit reached; retry in {wait:.0f}s")


async def request(ctx: TaskContext, payload: Call) -> dict[str, Any]:
    settings: Settings = ctx.settings
    tokens = _tokens(ctx)
    refreshed = False
    while True:
        token = await _valid_token(ctx, tokens)
        response = await ctx.http[SERVICE].request(
            payload.method,
            settings.base_url + payload.path,
            params=payload.params,
            json=payload.json_body,
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": settings.api_version,
            },
        )
        _observe(tokens, response)
        if response.status_code == 401 and tokens.refresh is not None and not refreshed:
            refreshed = True  # revoked or expired early: one refresh, one more try
            await _valid_token(ctx, tokens, refused=token)
            continue
        break
    _rate_limited(response)
    raise_for_status(response, expect=payload.expect, auth_hint=AUTH_HINT)
    return {
        "status": response.status_code,
        "body": response.json() if response.content else None,
        "rate_limit": {
            "remaining": response.headers.get("x-ratelimit-remaining"),
            "reset": response.headers.get("x-ratelimit-reset"),
        },
    }


plugin = Plugin(
    name="github",
    description="GitHub REST API calls; OAuth tokens tracked and refreshed, never used expired",
    services=(SERVICE,),
    settings=Settings,
    start=start,
    kinds=[TaskKind(name="github.request", handler=request, payload=Call)],
)
