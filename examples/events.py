"""Simulated users for the README tour: each asks the gateway for recommendations, and some buy.

Treatment's users buy more often (20% against 10%), so the report has a clear answer. Random
draws are seeded by unit, so a re-run sends the same traffic.

    python examples/events.py --url http://localhost:8000 --units 2000
"""

from __future__ import annotations

import argparse
import asyncio
import random

import httpx

CONVERSION = {"control": 0.10, "treatment": 0.20}


async def visit(client: httpx.AsyncClient, unit: str) -> str:
    """One user: a recommendation request, then maybe a purchase of the first item."""
    answer = await client.post("/v1/recommendations", json={"surface": "home_top", "unit_id": unit})
    answer.raise_for_status()
    body = answer.json()
    variant = body.get("variant") or "none"
    if random.Random(unit).random() < CONVERSION.get(variant, 0.0):
        event = {"unit_id": unit, "name": "purchase", "value": 1, "item_id": body["items"][0]["id"]}
        (await client.post("/v1/events", json=event)).raise_for_status()
    return variant


async def main(url: str, units: int, concurrency: int) -> None:
    """Send every unit's visit, a few at a time, and print how many landed in each variant."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def one(i: int) -> str:
            async with gate:
                return await visit(client, f"u{i}")

        variants = await asyncio.gather(*(one(i) for i in range(1, units + 1)))
    counts = {v: variants.count(v) for v in sorted(set(variants))}
    print(f"{units} users visited:", ", ".join(f"{v} {n}" for v, n in counts.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8000", help="the gateway")
    parser.add_argument("--units", type=int, default=2000, help="users to simulate")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.units, args.concurrency))
