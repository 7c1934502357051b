"""The gateway: a Starlette app that routes units to variants and serves precomputed results."""

from gateway.app import create_app

__all__ = ["create_app"]
