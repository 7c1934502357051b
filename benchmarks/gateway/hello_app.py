"""The floor of the stack: a bare Starlette app that reads the body and answers a constant.

No Redis, no parsing, no logging: what one request costs the server and Starlette alone. The
server benchmark (``python -m benchmarks.server_cost``) runs it on uvicorn and on Granian next
to the gateway and compares the gateway's in-process hot path with it (goal: >= 0.5x).

Run:  uvicorn --factory benchmarks.gateway.hello_app:create_app --port 8002 --loop uvloop \\
      --http httptools --no-access-log
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"hello":"world"}'


def create_app() -> Starlette:
    """The app: ``POST /hello`` (the body is read, as any real endpoint must)."""

    async def hello(request: Request) -> Response:
        await request.body()
        return Response(BODY, media_type="application/json")

    return Starlette(routes=[Route("/hello", hello, methods=["POST"])])
