"""The floor of the stack: a bare Starlette app that reads the body and answers a constant.

No Redis, no parsing, no logging: what one request costs the server and Starlette alone. The
server benchmark (``python -m benchmarks.server_cost``) runs it on uvicorn and on Granian next
to the gateway and compares the gateway's in-process hot path with it (goal: >= 0.5x).

Run on plain uvicorn:
      uvicorn --factory benchmarks.gateway.hello_app:create_app --port 8002 --loop uvloop \\
      --http httptools --no-access-log
or on ``abgate serve``'s server (gateway/server.py's ``GatewayHttpProtocol`` and uvicorn options):
      python -m benchmarks.gateway.hello_app --port 8002
"""

from __future__ import annotations

import argparse

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


def main() -> None:
    """``python -m benchmarks.gateway.hello_app --port N``: the app on the gateway's server."""
    import uvicorn

    from experiments.settings import Settings
    from gateway.server import uvicorn_options

    p = argparse.ArgumentParser(prog="python -m benchmarks.gateway.hello_app")
    p.add_argument("--port", type=int, default=8002)
    port = p.parse_args().port
    uvicorn.run(create_app(), **uvicorn_options(Settings(host="127.0.0.1", port=port)))


if __name__ == "__main__":
    main()
