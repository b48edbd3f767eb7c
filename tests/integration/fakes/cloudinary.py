"""Cloudinary's Upload API: ``POST /v1_1/{cloud}/{resource_type}/upload`` and ``/destroy``.

Requests are signed: ``signature`` = sha1 of the sorted ``k=v`` params (all but ``file``,
``api_key``, ``resource_type``, ``cloud_name``) joined by ``&``, then the API secret. A bad
key or signature answers 401 ``{"error": {"message": "Invalid Signature ..."}}``; a stale
``timestamp`` (over an hour) answers 400.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.integration.fakes.server import Faults, FaultyApp, form

CLOUD = "demo"
API_KEY = "123456789012345"
API_SECRET = "fake-api-secret"
UNSIGNED = {"file", "api_key", "resource_type", "cloud_name", "signature"}


@dataclass
class CloudinaryState:
    assets: dict[str, bytes] = field(default_factory=dict)


def _error(status: int, message: str | None = None) -> Response:
    text = message or {
        401: "Invalid Signature",
        404: "Resource not found",
        420: "Rate Limit Exceeded",
        429: "Rate Limit Exceeded",
    }.get(status, "General Error")
    return JSONResponse({"error": {"message": text}}, status_code=status)


def app(faults: Faults, state: CloudinaryState) -> FaultyApp:
    def verify(fields: dict[str, str | bytes]) -> Response | None:
        params = {k: str(v) for k, v in fields.items() if k not in UNSIGNED}
        to_sign = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        expected = hashlib.sha1((to_sign + API_SECRET).encode()).hexdigest()
        if fields.get("api_key") != API_KEY:
            return _error(401, f"Unknown API key {fields.get('api_key')}")
        if fields.get("signature") != expected:
            return _error(
                401, f"Invalid Signature {fields.get('signature')}. String to sign - '{to_sign}'."
            )
        if abs(time.time() - int(str(fields.get("timestamp", "0")))) > 3600:
            return _error(400, "Stale request - reported time is too old")
        return None

    async def upload(request: Request) -> Response:
        if request.path_params["cloud"] != CLOUD:
            return _error(404, f"Invalid cloud_name {request.path_params['cloud']}")
        fields = await form(request)
        problem = verify(fields)
        if problem is not None:
            return problem
        data = fields.get("file")
        if not isinstance(data, bytes):
            return _error(400, "Missing required parameter - file")
        public_id = str(fields.get("public_id") or f"upl_{len(state.assets)}")
        if fields.get("folder"):
            public_id = f"{fields['folder']}/{public_id}"
        state.assets[public_id] = data
        return JSONResponse(
            {
                "public_id": public_id,
                "version": 1,
                "resource_type": request.path_params["resource_type"],
                "bytes": len(data),
                "secure_url": f"https://res.cloudinary.com/{CLOUD}/image/upload/v1/{public_id}",
            }
        )

    async def destroy(request: Request) -> Response:
        fields = await form(request)
        problem = verify(fields)
        if problem is not None:
            return problem
        found = state.assets.pop(str(fields.get("public_id")), None)
        return JSONResponse({"result": "ok" if found is not None else "not found"})

    routes = [
        Route("/v1_1/{cloud}/{resource_type}/upload", upload, methods=["POST"]),
        Route("/v1_1/{cloud}/{resource_type}/destroy", destroy, methods=["POST"]),
    ]
    return FaultyApp(Starlette(routes=routes), faults, _error)
