"""stub"""

from __future__ import annotations

from analysis.report import Report


def render_html(report: Report) -> str:
    """stub"""
    return ""
