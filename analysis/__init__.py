"""Experiment analysis: archived logs (local or BigQuery) to reports with honest statistics.

Per-unit aggregation runs in the engine (DuckDB or BigQuery) from one SQL definition; only
sufficient statistics come back to Python, where ``analysis.stats`` turns them into estimates.
``build_report(experiment, source)`` takes a ``CohortSource``: ``ArchiveSource`` (DuckDB) or
``BigQuerySource``.
"""

from analysis.aggregates import Aggregates
from analysis.archive import ArchiveSource
from analysis.bigquery import BigQuerySource
from analysis.build import build_report
from analysis.errors import AnalysisError, ArchiveError, BigQueryError, NoExposures
from analysis.figures import analyse
from analysis.options import ReportOptions
from analysis.render_html import render_html
from analysis.render_table import render_table
from analysis.report import (
    Comparison,
    DailyPoint,
    Decision,
    GuardrailStatus,
    LookEstimate,
    MetricResult,
    Power,
    Report,
    VariantSummary,
    VariantVerdict,
    Verdict,
)
from analysis.source import CohortSource
from analysis.verdict import decide

__all__ = [
    "Aggregates",
    "AnalysisError",
    "ArchiveError",
    "ArchiveSource",
    "BigQueryError",
    "BigQuerySource",
    "CohortSource",
    "Comparison",
    "DailyPoint",
    "Decision",
    "GuardrailStatus",
    "LookEstimate",
    "MetricResult",
    "NoExposures",
    "Power",
    "Report",
    "ReportOptions",
    "VariantSummary",
    "VariantVerdict",
    "Verdict",
    "analyse",
    "build_report",
    "decide",
    "render_html",
    "render_table",
]
