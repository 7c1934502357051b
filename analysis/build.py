"""Building a report: ``build_report(experiment, source)``, the one entry point.

The source (``analysis.source.CohortSource``: a local archive in DuckDB, or a BigQuery sink
table) runs the aggregation; ``analysis.figures.analyse`` turns its looks into the report and
its verdict. A look is the data as of the end of one UTC day (``analysis.sql.Look``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from analysis.archive import ArchiveSource
from analysis.figures import analyse
from analysis.options import ReportOptions
from analysis.report import Report
from analysis.source import CohortSource
from experiments import Experiment

__all__ = ["build_report"]


def build_report(
    experiment: Experiment,
    source: CohortSource | Path | str,
    options: ReportOptions | None = None,
    *,
    alpha: float = 0.05,
    since: datetime | None = None,
    until: datetime | None = None,
    config_version: int | None = None,
    strict: bool = False,
) -> Report:
    """Report of ``experiment`` over [since, until) from ``source``; a path is a local archive
    (``ArchiveSource``).

    Records the source cannot use are skipped and counted (``Report.skipped``); with
    ``strict``, the source's AnalysisError names the first of them instead.
    """
    src = ArchiveSource(Path(source)) if isinstance(source, (Path, str)) else source
    opts = options or ReportOptions()
    cohort = src.read(
        experiment,
        since=since,
        until=until,
        cuped_window=opts.cuped_window,
        segment=opts.segment,
        strict=strict,
    )
    return analyse(
        experiment,
        cohort.plan,
        cohort.scan.looks,
        phases=cohort.scan.phases,
        excluded=cohort.scan.excluded,
        alpha=alpha,
        options=opts,
        since=since,
        until=until,
        source=src.label,
        config_version=config_version,
        skipped=cohort.skipped,
        warnings=cohort.warnings,
    )
