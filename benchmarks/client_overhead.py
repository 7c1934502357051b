"""The client library's own CPU cost per ``recommend`` call (a benchmark, not a test).

    PYTHONPATH=. python benchmarks/client_overhead.py [--calls 20000] [--rounds 3]

Three figures, CPU time of this process only (``time.process_time``), per call:
1. core: the sans-IO core alone (build the request, parse a 10-item answer, breaker, stats),
   driven with a canned answer: the client's own logic, no I/O at all;
2. raw httpx: ``httpx.AsyncClient.post`` + ``orjson.loads`` to a stub server in another
   process: what any Python caller pays for the HTTP call itself;
3. client: ``AsyncClient.recommend`` to the same stub: 2 plus the client's overhead.
The client's overhead is 3 - 2 (and should be close to 1). The goal is <= 50 us.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import time

import httpx
import orjson

from abgate.client import AsyncClient
from abgate.client._core import ClientCore, Reply

ANSWER = orjson.dumps(
    {
        "request_id": "0" * 32,
        "surface": "home_top",
        "unit_id": "u42",
        "experiment": "home-recs-demo",
        "variant": "control",
        "model": {"name": "home_recs", "version": "1"},
        "items": [{"id": f"sku-{i}", "score": 1 - i / 10} for i in range(10)],
        "source": "cache",
    }
)
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)


class _Stub(asyncio.Protocol):
    """Answers every request on the connection with ``RESPONSE`` (keep-alive)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


def _serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Stub, sock=sock)
        await server.serve_forever()

    asyncio.run(main())


def core_only(calls: int) -> float:
    core = ClientCore()
    reply = Reply(200, ANSWER)
    started = time.process_time()
    for _ in range(calls):
        exchange = core.recommend("home_top", "u42", limit=10, exclude=("sku-99",))
        next(exchange)
        with contextlib.suppress(StopIteration):
            exchange.send(reply)
    return (time.process_time() - started) / calls


async def raw_httpx(url: str, calls: int) -> float:
    body = {"surface": "home_top", "unit_id": "u42", "limit": 10, "exclude": ["sku-99"]}
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(200):  # warm the pool
            await http.post("/v1/recommendations", content=orjson.dumps(body), timeout=0.3)
        started = time.process_time()
        for _ in range(calls):
            r = await http.post("/v1/recommendations", content=orjson.dumps(body), timeout=0.3)
            orjson.loads(r.content)
        return (time.process_time() - started) / calls


async def client(url: str, calls: int) -> float:
    async with AsyncClient(url) as gateway:
        for _ in range(200):
            await gateway.recommend("home_top", "u42", limit=10, exclude=["sku-99"])
        started = time.process_time()
        for _ in range(calls):
            rec = await gateway.recommend("home_top", "u42", limit=10, exclude=["sku-99"])
        elapsed = (time.process_time() - started) / calls
        if rec.is_fallback:
            raise SystemExit(f"the stub did not answer: {rec.error}")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stub = multiprocessing.Process(target=_serve, args=(sock,), daemon=True)
    stub.start()
    try:
        core = core_only(args.calls)
        # interleaved rounds, best of each: the machine's noise only ever adds CPU time
        raws, fulls = [], []
        for _ in range(args.rounds):
            raws.append(asyncio.run(raw_httpx(url, args.calls)))
            fulls.append(asyncio.run(client(url, args.calls)))
        raw, full = min(raws), min(fulls)
    finally:
        stub.terminate()
        stub.join()
    print(f"calls per figure          {args.calls} (best of {args.rounds} rounds)")
    print(f"1. core alone             {core * 1e6:7.1f} us CPU/call")
    print(f"2. raw httpx + orjson     {raw * 1e6:7.1f} us CPU/call")
    print(f"3. AsyncClient.recommend  {full * 1e6:7.1f} us CPU/call")
    print(f"client overhead (3 - 2)   {(full - raw) * 1e6:7.1f} us CPU/call")


if __name__ == "__main__":
    main()
