"""A GitHub REST API and OAuth token endpoint, as the ``github`` plugin meets them.

- ``Authorization: Bearer T`` or ``token T``; an unknown or expired token gets
  401 ``{"message": "Bad credentials", "documentation_url": ...}``.
- Every API answer carries ``X-RateLimit-*``; a token with an expiry gets
  ``github-authentication-token-expiration: YYYY-MM-DD HH:MM:SS UTC``.
- ``POST /login/oauth/access_token`` (grant_type=refresh_token) rotates the refresh token
  and answers 200 with either the new tokens or ``{"error": "bad_refresh_token", ...}``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.integration.fakes.server import Faults, FaultyApp, form

DOCS = "https://docs.github.com/rest"
CLIENT_ID = "Iv1.fakeclient"
CLIENT_SECRET = "fake-client-secret"


@dataclass
class GitHubState:
    tokens: dict[str, float | None] = field(default_factory=dict)
    """Access token → expiry (epoch seconds) or None (no expiry)."""
    refresh_tokens: set[str] = field(default_factory=set)
    issued_expires_in: int = 28800
    refreshes: int = 0
    used_tokens: list[str] = field(default_factory=list)


def _error(status: int) -> Response:
    messages = {
        401: "Bad credentials",
        403: "Resource not accessible by personal access token",
        404: "Not Found",
        422: "Validation Failed",
        500: "Server Error",
        502: "Server Error",
        503: "Service Unavailable",
        429: "API rate limit exceeded",
    }
    body = {
        "message": messages.get(status, "Error"),
        "documentation_url": DOCS,
        "status": str(status),
    }
    return JSONResponse(body, status_code=status)


def app(faults: Faults, state: GitHubState) -> FaultyApp:  # noqa: C901 - one closure per route
    def authorised(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or token not in state.tokens:
            return None
        expires = state.tokens[token]
        if expires is not None and expires <= time.time():
            return None
        state.used_tokens.append(token)
        return token

    def answer(token: str, body: object, status: int = 200) -> Response:
        response = JSONResponse(body, status_code=status)
        response.headers["X-RateLimit-Limit"] = "5000"
        response.headers["X-RateLimit-Remaining"] = "4999"
        response.headers["X-RateLimit-Reset"] = str(int(time.time()) + 3600)
        response.headers["X-RateLimit-Resource"] = "core"
        expires = state.tokens.get(token)
        if expires is not None:
            moment = datetime.fromtimestamp(expires, UTC)
            response.headers["github-authentication-token-expiration"] = (
                f"{moment:%Y-%m-%d %H:%M:%S} UTC"
            )
        return response

    async def user(request: Request) -> Response:
        token = authorised(request)
        if token is None:
            return _error(401)
        return answer(token, {"login": "octocat", "id": 1, "type": "User"})

    async def issues(request: Request) -> Response:
        token = authorised(request)
        if token is None:
            return _error(401)
        owner, repo = request.path_params["owner"], request.path_params["repo"]
        if repo == "missing":
            return _error(404)
        if request.method == "POST":
            body = await request.json()
            if not body.get("title"):
                return JSONResponse(
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {"resource": "Issue", "field": "title", "code": "missing_field"}
                        ],
                        "documentation_url": DOCS,
                    },
                    status_code=422,
                )
            return answer(token, {"number": 1347, "title": body["title"], "state": "open"}, 201)
        return answer(token, [{"number": 1347, "title": f"{owner}/{repo} issue"}])

    async def oauth(request: Request) -> Response:
        fields = await form(request)
        if fields.get("client_id") != CLIENT_ID or fields.get("client_secret") != CLIENT_SECRET:
            return JSONResponse(
                {
                    "error": "incorrect_client_credentials",
                    "error_description": "The client_id and/or client_secret passed are incorrect.",
                }
            )
        refresh = str(fields.get("refresh_token"))
        if fields.get("grant_type") != "refresh_token" or refresh not in state.refresh_tokens:
            return JSONResponse(
                {
                    "error": "bad_refresh_token",
                    "error_description": "The refresh token passed is incorrect or expired.",
                }
            )
        state.refresh_tokens.discard(refresh)  # GitHub rotates refresh tokens
        state.refreshes += 1
        access, new_refresh = f"ghu_{secrets.token_hex(8)}", f"ghr_{secrets.token_hex(8)}"
        state.tokens[access] = time.time() + state.issued_expires_in
        state.refresh_tokens.add(new_refresh)
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": state.issued_expires_in,
                "refresh_token": new_refresh,
                "refresh_token_expires_in": 15811200,
                "scope": "",
                "token_type": "bearer",
            }
        )

    async def not_found(request: Request) -> Response:
        return _error(404)

    routes = [
        Route("/user", user),
        Route("/repos/{owner}/{repo}/issues", issues, methods=["GET", "POST"]),
        Route("/login/oauth/access_token", oauth, methods=["POST"]),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
    ]
    return FaultyApp(Starlette(routes=routes), faults, _error)
