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
from analysis.salts import check_salt, salt_warnings
from analysis.source import Cohort, CohortSource
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
    ``strict``, the source's AnalysisError names the first of them instead. Phases served under
    another salt than the experiment's are left out, with a warning (analysis/salts.py).
    """
    src = ArchiveSource(Path(source)) if isinstance(source, (Path, str)) else source
    opts = options or ReportOptions()

    def read(other_salt: frozenset[str] = frozenset()) -> Cohort:
        return src.read(
            experiment,
            since=since,
            until=until,
            cuped_window=opts.cuped_window,
            segment=opts.segment,
            strict=strict,
            other_salt=other_salt,
        )

    cohort = first = read()
    # A window served under two salts is read again without the other salt's phases (rare:
    # a forced salt change, or a restart under a new salt); analysis/salts.py says why.
    check = check_salt(experiment.salt or experiment.key, first.scan.phases)
    if check.changed:
        cohort = read(check.other_ids)
    salt = salt_warnings(check, first.scan, cohort.scan if check.changed else None)
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
        warnings=(*cohort.warnings, *salt),
    )
