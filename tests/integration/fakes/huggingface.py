"""The Hugging Face Inference API: ``POST /models/{model}`` with ``Authorization: Bearer``.

Errors are ``{"error": "..."}``: 401 "Invalid credentials in Authorization header", 404
"Model x does not exist", and 503 ``{"error": "Model x is currently loading",
"estimated_time": 20.0}`` while a model warms up (``loading`` requests of them).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.integration.fakes.server import Faults, FaultyApp

TOKEN = "hf_fake_token"


@dataclass
class HubState:
    loading: int = 0
    estimated_time: float = 0.2


def _error(status: int, message: str | None = None) -> Response:
    text = message or {
        401: "Invalid credentials in Authorization header",
        429: "Rate limit reached. You reached free usage limit (reset hourly).",
    }.get(status, "Internal Server Error")
    return JSONResponse({"error": text}, status_code=status)


def app(faults: Faults, state: HubState) -> FaultyApp:
    async def infer(request: Request) -> Response:
        model = request.path_params["model"]
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _error(401)
        if model.endswith("/missing"):
            return _error(404, f"Model {model} does not exist")
        if state.loading > 0:
            state.loading -= 1
            return JSONResponse(
                {
                    "error": f"Model {model} is currently loading",
                    "estimated_time": state.estimated_time,
                },
                status_code=503,
            )
        body = await request.json()
        return JSONResponse([{"label": "POSITIVE", "score": 0.99, "echo": body["inputs"]}])

    routes = [Route("/models/{model:path}", infer, methods=["POST"])]
    return FaultyApp(Starlette(routes=routes), faults, _error)
