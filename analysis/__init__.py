"""Experiment analysis: archived logs (local or BigQuery) to reports with honest statistics.

Per-unit aggregation runs in the engine (DuckDB or BigQuery) from one SQL definition; only
sufficient statistics come back to Python, where ``analysis.stats`` turns them into estimates.
"""

from analysis.aggregates import Aggregates
from analysis.build import ReportOptions, analyse, build_report
from analysis.errors import AnalysisError, ArchiveError, BigQueryError
from analysis.render_html import render_html
from analysis.render_table import render_table
from analysis.report import Comparison, DailyPoint, MetricResult, Power, Report, VariantSummary

__all__ = [
    "Aggregates",
    "AnalysisError",
    "ArchiveError",
    "BigQueryError",
    "Comparison",
    "DailyPoint",
    "MetricResult",
    "Power",
    "Report",
    "ReportOptions",
    "VariantSummary",
    "analyse",
    "build_report",
    "render_html",
    "render_table",
]
