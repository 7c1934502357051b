"""stub"""

from __future__ import annotations

from typing import Any


def render_table(report: Any, console: Any) -> None:
    """stub"""
