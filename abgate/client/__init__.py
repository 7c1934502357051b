"""A client of the abgate gateway for calling services: answers within a budget, never
breaks the page, never double-counts.

    async with AsyncClient("http://abgate:8000", defaults={"home_top": ["sku-1"]}) as gw:
        rec = await gw.recommend("home_top", "u-123", limit=10)
        gw.track("u-123", "purchase", value=1200.0, item_id="sku-3")

``Client`` is the same for blocking code (Django, Flask, scripts). Both are the one core of
``_core.py`` (sans-IO) driven by two thin transports. docs/integrators.md is the guide.
Importing this package needs httpx and orjson only: no Starlette, asyncpg or Redis.
"""

from abgate.client._async import AsyncClient
from abgate.client._base import BaseClient
from abgate.client._breaker import CircuitBreaker
from abgate.client._core import CallStats
from abgate.client._models import (
    Event,
    EventResult,
    EventStats,
    Item,
    ModelInfo,
    Recommendation,
)
from abgate.client._sync import Client

__all__ = [
    "AsyncClient",
    "BaseClient",
    "CallStats",
    "CircuitBreaker",
    "Client",
    "Event",
    "EventResult",
    "EventStats",
    "Item",
    "ModelInfo",
    "Recommendation",
]
