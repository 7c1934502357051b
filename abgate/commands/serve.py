"""``abgate serve`` and ``abgate demo``."""

from __future__ import annotations


def serve() -> None:
    """Run the gateway (not implemented yet)."""


def demo() -> None:
    """Run the demo (not implemented yet)."""
