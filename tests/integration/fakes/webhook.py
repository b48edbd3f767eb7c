"""A webhook receiver: answers every request with what it received (for ``http.request``).

Run alone (the leak test serves it from another process, so its sockets are not ours)::

    python -m tests.integration.fakes.webhook PORT
"""

from __future__ import annotations

import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.integration.fakes.server import Faults, FaultyApp


def error(status: int) -> Response:
    return JSONResponse({"error": f"webhook receiver failed with {status}"}, status_code=status)


async def echo(request: Request) -> Response:
    body = await request.body()
    status = 201 if request.method == "POST" else 200
    return JSONResponse(
        {"method": request.method, "path": request.url.path, "length": len(body)},
        status_code=status,
    )


def app(faults: Faults) -> FaultyApp:
    routes = [
        Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    return FaultyApp(Starlette(routes=routes), faults, error)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app(Faults()), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
