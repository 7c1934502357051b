"""Where a report's data comes from: the ``CohortSource`` seam.

A source runs ``analysis.sql``'s one statement in its engine and returns a ``Cohort``: the plan
(which columns carry which metric), what the statement found (looks, phases, exclusions) and
what it skipped. ``analysis.archive.ArchiveSource`` (DuckDB over a local archive) and
``analysis.bigquery.BigQuerySource`` (a Cloud Logging sink table) implement it;
``analysis.build.build_report`` takes either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from analysis.report import Skipped
from analysis.sql import QueryPlan, Scan
from experiments import Experiment


@dataclass(frozen=True, slots=True)
class Cohort:
    """What a source found for one experiment: the plan, the scan, the skipped records, and
    warnings about what the source could not read (a table without the phase fields)."""

    plan: QueryPlan
    scan: Scan
    skipped: Skipped
    warnings: tuple[str, ...] = ()


class CohortSource(Protocol):
    """An engine that aggregates an experiment's logs to per-look sufficient statistics."""

    @property
    def label(self) -> str:
        """``Report.source``: the archive path, or ``bigquery:PROJECT.DATASET.TABLE``."""
        ...

    def read(
        self,
        experiment: Experiment,
        *,
        since: datetime | None,
        until: datetime | None,
        cuped_window: timedelta | None,
        segment: str | None,
        strict: bool,
        other_salt: frozenset[str] = frozenset(),
    ) -> Cohort:
        """Run the aggregation over [since, until). Records the statement cannot use are
        skipped and counted in ``Cohort.skipped``, or with ``strict`` raise the source's
        ``AnalysisError`` naming the first of them. ``other_salt``: phases served under another
        salt, left out (``analysis.sql.build_plan``)."""
        ...
