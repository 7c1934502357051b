"""Simulated users for the README tour: each asks the gateway for recommendations, and some buy.

Treatment's users buy more often (20% against 10%), so the report has a clear answer. Random
draws are seeded by unit, so a re-run sends the same traffic. It calls the gateway through
``abgate.client`` (docs/integrators.md), as a calling service would: purchases are buffered and
sent in batches, each with its own ``event_id``, and flushed when the client closes.

    python examples/events.py --url http://localhost:8000 --units 2000
"""

from __future__ import annotations

import argparse
import asyncio
import random

from abgate.client import AsyncClient

CONVERSION = {"control": 0.10, "treatment": 0.20}


async def visit(gateway: AsyncClient, unit: str) -> str:
    """One user: a recommendation request, then maybe a purchase of the first item."""
    answer = await gateway.recommend("home_top", unit)
    variant = answer.variant or answer.source  # "client-fallback" if the gateway did not answer
    if answer.items and random.Random(unit).random() < CONVERSION.get(variant, 0.0):
        gateway.track(unit, "purchase", value=1, item_id=answer.items[0].id)
    return variant


async def main(url: str, units: int, concurrency: int) -> None:
    """Send every unit's visit, a few at a time, and print how many landed in each variant."""
    gate = asyncio.Semaphore(concurrency)
    # A script, not a page: a generous budget, so a busy machine does not turn answers into
    # client fallbacks (a page would keep the default 300 ms and show the fallback instead).
    async with AsyncClient(url, timeout=10.0) as gateway:

        async def one(i: int) -> str:
            async with gate:
                return await visit(gateway, f"u{i}")

        variants = await asyncio.gather(*(one(i) for i in range(1, units + 1)))
    stats = gateway.event_stats
    counts = {v: variants.count(v) for v in sorted(set(variants))}
    print(f"{units} users visited:", ", ".join(f"{v} {n}" for v, n in counts.items()))
    print(f"purchases sent {stats.sent} of {stats.tracked}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8000", help="the gateway")
    parser.add_argument("--units", type=int, default=2000, help="users to simulate")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.units, args.concurrency))
