"""The BigQuery path: the same aggregation, run inside BigQuery on a Cloud Logging sink table.

``--bigquery PROJECT.DATASET.TABLE`` names a table written by a Cloud Logging sink (a
``jsonPayload`` RECORD column with the DESIGN.md payload fields). The statement is
``analysis.sql``'s, transpiled to BigQuery's dialect; only the per-(variant, look day) sufficient
statistics are fetched. ``BigQuerySource`` is the ``CohortSource`` (``analysis.source``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from analysis.errors import BigQueryError
from analysis.report import Skipped
from analysis.source import Cohort
from analysis.sql import PAYLOAD_FIELDS, build_plan, scan_from_rows
from experiments import Experiment

if TYPE_CHECKING:
    from google.cloud import bigquery

PHASE_FIELDS = ("phase", "weights", "bucket")  # added to exposures after the first sinks
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


@dataclass(frozen=True, slots=True)
class BigQuerySource:
    """A Cloud Logging sink table aggregated inside BigQuery: the ``CohortSource`` of
    ``abgate report --bigquery``.

    A sink table holds typed rows, so there is no torn line; exposure/outcome records missing
    a required field are skipped and counted (``Report.skipped``, without locations), or with
    ``strict`` fail the report.
    """

    table: str
    client: bigquery.Client
    timeout: float = 600.0

    @classmethod
    def connect(cls, table: str, *, endpoint: str | None = None) -> BigQuerySource:
        """The source of ``PROJECT.DATASET.TABLE`` with a client for its project
        (``make_client``); BigQueryError naming the expected form for a bad reference."""
        table = parse_table(table)
        return cls(table, make_client(table.split(".")[0], endpoint=endpoint))

    @property
    def label(self) -> str:
        """``bigquery:PROJECT.DATASET.TABLE``."""
        return f"bigquery:{self.table}"

    def read(
        self,
        experiment: Experiment,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        cuped_window: timedelta | None = None,
        segment: str | None = None,
        strict: bool = False,
        other_salt: frozenset[str] = frozenset(),
    ) -> Cohort:
        """Run the aggregation in BigQuery; only per-look sufficient statistics are fetched.

        Payload fields the table's schema lacks are read as NULL (a sink table created before
        exposures carried ``phase``/``weights``/``bucket`` is one unknown phase, with a
        warning in the report).
        """
        missing = self._missing_fields(segment)
        plan = build_plan(
            experiment,
            parse_table(self.table),
            dialect="bigquery",
            since=since,
            until=until,
            cuped_window=cuped_window,
            segment=segment,
            missing=missing,
            other_salt=other_salt,
        )
        try:
            job = self.client.query(plan.sql, job_config=_job_config())
            rows: list[dict[str, Any]] = [dict(r.items()) for r in job.result(timeout=self.timeout)]
        except Exception as exc:  # google.api_core raises many types; translate at the edge
            raise BigQueryError(f"BigQuery query on {self.table} failed: {exc}") from exc
        scan = scan_from_rows(plan, rows)
        if strict and scan.read.skipped:
            raise BigQueryError(
                f"{self.table}: {scan.read.skipped:,} exposure/outcome rows lack a required field "
                "(event_id, unit_id, ts; experiment and variant, or name); without --strict the "
                "report skips and counts them"
            )
        skipped = Skipped(scan.read.total, scan.read.torn, scan.read.incomplete)
        return Cohort(plan, scan, skipped, _warnings(self.table, missing, segment))

    def _missing_fields(self, segment: str | None) -> frozenset[str]:
        """The payload fields the report reads that the table's ``jsonPayload`` lacks
        (``attributes`` when the ``--by`` attribute is not in it)."""
        try:
            schema = self.client.get_table(self.table).schema
        except Exception as exc:  # google.api_core raises many types; translate at the edge
            raise BigQueryError(f"cannot read the schema of {self.table}: {exc}") from exc
        payload = next((f for f in schema if f.name == "jsonPayload"), None)
        if payload is None:
            raise BigQueryError(
                f"{self.table} has no jsonPayload column: is it a Cloud Logging sink table?"
            )
        present = {f.name: f for f in payload.fields}
        missing = {name for name, _ in PAYLOAD_FIELDS if name not in present}
        attributes = present.get("attributes")
        if segment is not None and (
            attributes is None or segment not in {f.name for f in attributes.fields}
        ):
            missing.add("attributes")
        return frozenset(missing)


def _job_config() -> bigquery.QueryJobConfig:
    from google.cloud import bigquery

    return bigquery.QueryJobConfig(use_legacy_sql=False, labels={"abgate": "report"})


def _warnings(table: str, missing: frozenset[str], segment: str | None) -> tuple[str, ...]:
    """What the report says about the fields the table lacks."""
    out = []
    phase = [f for f in PHASE_FIELDS if f in missing]
    if phase:
        out.append(
            f"{table} has no jsonPayload.{', '.join(phase)} (the table was created before"
            " exposures carried them): every exposure is read as one unknown phase with the"
            " experiment file's weights, and no unit is excluded for an allocation change; if"
            " the weights changed in the window, report the periods apart (--since/--until)"
        )
    other = sorted(missing - {*PHASE_FIELDS, "attributes"})
    if other:
        out.append(f"{table} has no jsonPayload.{', '.join(other)}: read as null")
    if "attributes" in missing and segment is not None:
        out.append(
            f"{table} has no jsonPayload.attributes.{segment}: every unit is in segment (none)"
        )
    return tuple(out)
