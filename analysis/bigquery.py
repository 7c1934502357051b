"""The BigQuery path: the same aggregation, run inside BigQuery on a Cloud Logging sink table.

``--bigquery PROJECT.DATASET.TABLE`` names a table written by a Cloud Logging sink (a
``jsonPayload`` RECORD column with the DESIGN.md payload fields). The statement is
``analysis.sql``'s, transpiled to BigQuery's dialect; only the per-(variant, look day) sufficient
statistics are fetched.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from analysis.build import ReportOptions, analyse
from analysis.errors import BigQueryError
from analysis.report import Report, Skipped
from analysis.sql import QueryPlan, Scan, build_plan, scan_from_rows
from experiments import Experiment

if TYPE_CHECKING:
    from google.cloud import bigquery

_TABLE = re.compile(r"^[A-Za-z0-9_.:\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-$*]+$")


def parse_table(table: str) -> str:
    """Check a ``PROJECT.DATASET.TABLE`` reference; BigQueryError naming the expected form."""
    if not _TABLE.match(table):
        raise BigQueryError(
            f"--bigquery {table!r}: expected PROJECT.DATASET.TABLE (a Cloud Logging sink table)"
        )
    return table


def make_client(project: str, *, endpoint: str | None = None) -> bigquery.Client:
    """A BigQuery client: default credentials, or anonymous ones for a local ``endpoint``."""
    from google.cloud import bigquery

    if endpoint is None:
        return bigquery.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def scan_bigquery(
    experiment: Experiment,
    table: str,
    client: bigquery.Client,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    options: ReportOptions | None = None,
    timeout: float = 600.0,
) -> tuple[QueryPlan, Scan]:
    """Run the aggregation in BigQuery; return the plan and what it found."""
    opts = options or ReportOptions()
    plan = build_plan(
        experiment,
        parse_table(table),
        dialect="bigquery",
        since=since,
        until=until,
        cuped_window=opts.cuped_window,
        segment=opts.segment,
    )
    try:
        job = client.query(plan.sql, job_config=_job_config())
        rows: list[dict[str, Any]] = [dict(r.items()) for r in job.result(timeout=timeout)]
    except Exception as exc:  # google.api_core raises many types; translate at the edge
        raise BigQueryError(f"BigQuery query on {table} failed: {exc}") from exc
    return plan, scan_from_rows(plan, rows)


def _job_config() -> bigquery.QueryJobConfig:
    from google.cloud import bigquery

    return bigquery.QueryJobConfig(use_legacy_sql=False, labels={"abgate": "report"})


def build_report_bigquery(
    experiment: Experiment,
    table: str,
    client: bigquery.Client,
    *,
    alpha: float = 0.05,
    since: datetime | None = None,
    until: datetime | None = None,
    options: ReportOptions | None = None,
    config_version: int | None = None,
    strict: bool = False,
) -> Report:
    """Report of ``experiment`` from a BigQuery Cloud Logging sink table.

    A sink table holds typed rows, so there is no torn line; exposure/outcome records missing
    a required field are skipped and counted (``Report.skipped``, without locations), or with
    ``strict`` fail the report.
    """
    plan, scan = scan_bigquery(experiment, table, client, since=since, until=until, options=options)
    if strict and scan.read.skipped:
        raise BigQueryError(
            f"{table}: {scan.read.skipped:,} exposure/outcome rows lack a required field "
            "(event_id, unit_id, ts; experiment and variant, or name); without --strict the "
            "report skips and counts them"
        )
    return analyse(
        experiment,
        plan,
        scan.looks,
        phases=scan.phases,
        excluded=scan.excluded,
        alpha=alpha,
        options=options,
        since=since,
        until=until,
        source=f"bigquery:{table}",
        config_version=config_version,
        skipped=Skipped(scan.read.total, scan.read.torn, scan.read.incomplete),
    )
