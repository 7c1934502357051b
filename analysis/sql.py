"""The one definition of the per-look aggregation, generated for DuckDB and BigQuery.

The query is written once, in DuckDB's dialect, against a relation with Cloud Logging's
``jsonPayload`` struct column (the local archive read by ``read_json`` and a BigQuery logging
sink table have the same shape). DuckDB runs that text as it is; for BigQuery it is transpiled
with sqlglot. So the local and the BigQuery paths cannot drift: they run the same statement.

What the statement does (DESIGN.md, "Metrics and the report"; docs/analysts.md, "Looks"):

1. exposures of this experiment, not ``forced``, inside [since, until), deduplicated by
   ``event_id``; per unit: the variant of its first exposure (the smallest ``(ts, event_id)``),
   its time and its UTC day (the enrolment day);
2. outcomes named by a metric, before ``until``, deduplicated by ``event_id``; joined to the
   unit's first exposure, counted (and their values summed) only at or after it (and, for CUPED,
   separately in the window before it); outcomes of units never exposed drop out of the join;
3. exposures and outcomes together, joined to the unit's first exposure: per unit and UTC day
   on which something of it was logged, that day's increments (exposures, counts, sums), each
   event on its own day (covariate outcomes, logged before enrolment, on the enrolment day);
   a running sum per unit gives its totals at the end of each of those days;
4. the looks: every UTC day on which anything was logged. A unit enters every look from its
   enrolment day on, with its totals as of the end of that look's day (a range join of each
   running row to the looks before the unit's next row);
5. per-unit metric values at each look (a capped mean metric's total winsorised at its
   percentile over the pooled units of that look: ``analysis.metrics.mean.capped``), reduced per (variant, look
   day) to count, means,
   sample variances and covariances: the sufficient statistics, and nothing else, come back.
   The last look holds every unit with every event of the window: the fixed-horizon data.

Reproducible: a float sum's last bits depend on the order of its terms, and DuckDB's threads
combine partial sums in whatever order they finish, so the same archive gave a different last
digit from run to run. In DuckDB every floating aggregate of the statement (the per-day value
sums, and AVG, VAR_SAMP, COVAR_SAMP of the per-unit values) is ordered by its own arguments
(``SUM(x ORDER BY x)``): it then adds in that order, sequentially, after the threads are done,
so its result is a function of the multiset of its inputs (ties are equal values). Integer
aggregates (COUNT, SUM of counts) are exact anyway; the running sums per unit (a window ordered
by day) and QUANTILE_CONT are deterministic. ``scan_from_rows`` sorts the result rows, so Python
merges them in a fixed order too. DuckDB honours ORDER BY only in aggregates it marks
order-dependent (its optimizer drops it from the others), which SUM/AVG/VAR_SAMP/COVAR_SAMP of
DOUBLE are in DuckDB 2.0 (tests/analysis/test_reproducible.py checks that against Python's
sequential sum). BigQuery has no ORDER BY in these aggregates: its transpiled statement is the
unordered one, and a BigQuery report's last bits may differ between runs (docs/analysts.md).

Ties: whatever the statement picks from several rows is the row with the smallest key, and
each key is total, so the pick is a function of the rows, never of their order (which changes
with files, lines and threads; MIN_BY and ANY_VALUE take whichever row comes first among
equals). Times have microseconds, and two exposures of one unit can share one (two replicas, a
retried request, a phase change): a unit's first exposure is its smallest ``(ts, event_id)``
(``event_id`` is unique after deduplication), and its variant, phase, bucket and segment all
come from that record (a NULL segment included: DuckDB's MIN_BY would skip it, BigQuery's not).
Of the copies of one ``event_id``, the one kept is the smallest by its content, ``(ts,
unit_id, variant, phase, bucket, segment)`` or ``(ts, unit_id, name, value)``. A phase's
weights are those of its first exposure with weights, by ``(ts, event_id)`` (copies of one
event that differ in weights alone remain a tie). Keys compare NULL after any value, as
DuckDB's tuples do; BigQuery orders no tuple or struct, so ``_bigquery_smallest`` rewrites
these picks as ``ARRAY_AGG(... ORDER BY k IS NULL, k, ... LIMIT 1)[OFFSET(0)]``. The
``ANY_VALUE`` left in the statement each see one value, repeated by a join (a unit's or a
phase's row).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from analysis.aggregates import Aggregates
from analysis.errors import BadSegment
from analysis.metrics import EXPOSURES, MetricColumns, UnitTotals, estimator_for
from experiments import Experiment

Dialect = Literal["duckdb", "bigquery"]

# The payload fields the analysis reads, with their DuckDB types (for read_json's schema).
PAYLOAD_FIELDS: tuple[tuple[str, str], ...] = (
    ("type", "VARCHAR"),
    ("event_id", "VARCHAR"),
    ("ts", "TIMESTAMP"),  # read_json parses the ISO "...Z" form; BigQuery casts it
    ("experiment", "VARCHAR"),
    ("variant", "VARCHAR"),
    ("unit_id", "VARCHAR"),
    ("forced", "BOOLEAN"),
    ("name", "VARCHAR"),
    ("value", "DOUBLE"),
    ("phase", "VARCHAR"),
    ("weights", "STRUCT(variant VARCHAR, weight DOUBLE, lo INTEGER, hi INTEGER)[]"),
    ("bucket", "INTEGER"),
)
# A record the analysis can use: the fields docs/design.md ("Log records") requires of its
# type are present (and ``ts`` parsed as a time). Others are skipped and counted, not used.
COMPLETE = (
    "(event_id IS NOT NULL AND unit_id IS NOT NULL AND ts IS NOT NULL AND"
    " (type = 'outcome' AND name IS NOT NULL"
    " OR type = 'exposure' AND experiment IS NOT NULL AND variant IS NOT NULL))"
)
# A line that is no log entry at all: read_json with ignore_errors gives it NULL columns.
TORN = "(jsonPayload IS NULL AND logName IS NULL)"
READ_CHECKS = ("total", "torn", "incomplete")  # the 'read' rows of the result (ReadCount)
HOLDOUT = "__holdout__"  # the variant of holdout exposures (docs/design.md, "Log records")
DEFAULT_OVERLAP = timedelta(minutes=5)  # replicas switch allocations within seconds of each other


def payload_fields(segment: str | None = None) -> tuple[tuple[str, str], ...]:
    """The payload fields a report reads; with ``segment``, also ``attributes.<segment>``."""
    if segment is None:
        return PAYLOAD_FIELDS
    return (*PAYLOAD_FIELDS, ("attributes", f"STRUCT({_ident(segment)} VARCHAR)"))


def _ident(name: str) -> str:
    """A quoted identifier (an attribute name from the command line)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}", name):
        raise BadSegment(
            f"--by {name!r}: an attribute name holds letters, digits, '_' and '-' only"
        )
    return '"' + name + '"'


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """The metric columns, the covariance pairs, and the SQL generating them."""

    metrics: tuple[MetricColumns, ...]
    columns: tuple[str, ...]
    cov_pairs: tuple[tuple[str, str], ...]
    sql: str


def _lit(value: str) -> str:
    """A DuckDB string literal (a quote is doubled; backslashes are plain characters)."""
    return "'" + value.replace("'", "''") + "'"


def _ts(value: datetime, ts_type: str) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)  # naive = UTC, as the archive's Z times
    return f"CAST({_lit(value.isoformat() + 'Z')} AS {ts_type})"


def _outcome_names(experiment: Experiment) -> list[str]:
    names: list[str] = []
    for m in experiment.metrics:
        for n in (m.outcome, m.numerator, m.denominator):
            if n and n != EXPOSURES and n not in names:
                names.append(n)
    return names


def _metric_columns(
    experiment: Experiment, index: dict[str, int], cuped: bool
) -> tuple[list[MetricColumns], list[str], list[tuple[str, str]]]:
    """Each metric's per-unit columns, from its kind's estimator (``analysis.metrics``)."""
    totals = UnitTotals(index)
    cols: list[MetricColumns] = []
    exprs = ["exposures AS exposures"]
    pairs: list[tuple[str, str]] = []
    for i, m in enumerate(experiment.metrics):
        part = estimator_for(m).sql(m, i, totals, cuped)
        cols.append(part.columns)
        exprs += part.exprs
        pairs += part.pairs
    return cols, exprs, pairs


def build_plan(
    experiment: Experiment,
    table: str,
    *,
    dialect: Dialect = "duckdb",
    since: datetime | None = None,
    until: datetime | None = None,
    cuped_window: timedelta | None = None,
    segment: str | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    lines: bool = False,
    missing: frozenset[str] = frozenset(),
    other_salt: frozenset[str] = frozenset(),
) -> QueryPlan:
    """Generate the per-(variant, phase, look day[, segment]) sufficient-statistics query.

    ``table`` names a relation with a ``jsonPayload`` struct column: a DuckDB view, or a
    BigQuery ``project.dataset.table``. ``cuped_window`` adds each proportion/mean metric's
    value in that window before the first exposure as a covariate column ``x<i>``.
    ``segment`` groups units by that request attribute of their first exposure (``--by``).
    ``overlap``: an earlier phase seen up to this long after a later one started is replicas
    switching, not the old allocation served again (the rule is analysis/phases.py's
    ``plan_phases``, which the report uses for the expected shares).
    ``lines``: ``table`` is read from lines of JSON (the local archive, with a ``logName``
    column): a line that is no log entry (torn, not an object) is counted as ``torn``.
    Records of type exposure/outcome without the fields ``COMPLETE`` names are counted as
    ``incomplete`` and left out (``ReadCount``).
    ``missing``: payload fields (``PAYLOAD_FIELDS`` names, or ``attributes``) that the table's
    schema lacks, read as NULL: a BigQuery sink table created before exposures carried
    ``phase``/``weights``/``bucket`` has no such columns, and naming them would fail.
    ``other_salt``: ids of phases served under another salt than the experiment's
    (analysis/salts.py finds them from the phases' witnesses). Their exposures are left out;
    the units of each remaining phase k are counted only before its cut, and units first
    exposed at or after the cut are excluded ("Salt changes" in docs/analysts.md). The cut is
    the first exposure, after k started, of such a phase j that started after k, or the first
    one past the ``overlap`` of a j that started before (served again). A j that started after
    k but ended within the overlap while k went on is replicas switching to k, seen from a
    window that starts at the switch: it does not cut k.
    """
    names = _outcome_names(experiment)
    index = {n: j for j, n in enumerate(names)}
    metric_cols, value_exprs, pairs = _metric_columns(experiment, index, cuped_window is not None)
    columns = [e.rsplit(" AS ", 1)[1] for e in value_exprs]
    # Every time in the logs is UTC ("...Z"). BigQuery's TIMESTAMP is an instant; DuckDB's
    # TIMESTAMPTZ would need the ICU extension (not always loadable offline) and would take
    # days in the session's time zone, while its plain TIMESTAMP parses "...Z" to the same
    # instant and casts to the UTC date. So the DuckDB text says TIMESTAMP, and the text
    # transpiled for BigQuery says TIMESTAMPTZ (sqlglot's name for BigQuery's TIMESTAMP).
    ts_type = "TIMESTAMPTZ" if dialect == "bigquery" else "TIMESTAMP"

    exposure_window = ""
    if since is not None:
        exposure_window += f" AND ts >= {_ts(since, ts_type)}"
    if until is not None:
        exposure_window += f" AND ts < {_ts(until, ts_type)}"
    outcome_filter = f"name IN ({', '.join(_lit(n) for n in names)})" if names else "FALSE"
    if until is not None:
        outcome_filter += f" AND ts < {_ts(until, ts_type)}"

    ordered = dialect == "duckdb"  # "Reproducible" in the module docstring
    counters = _counters(index, " ".join(value_exprs), cuped_window, ordered=ordered)
    daily = "".join(f",\n         {expr} AS {name}" for name, expr in counters)
    running = "".join(
        f",\n         SUM({name}) OVER (PARTITION BY unit_id ORDER BY day NULLS FIRST"
        f" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {name}"
        for name in ["exposures", *(n for n, _ in counters)]
    )
    carried = "".join(f", r.{name}" for name in ["exposures", *(n for n, _ in counters)])
    stats = ["COUNT(*) AS n"]
    for c in columns:
        stats += [
            f"{_agg('AVG', c, ordered)} AS m_{c}",
            f"COALESCE({_agg('VAR_SAMP', c, ordered)}, 0) AS v_{c}",
        ]
    stats += [
        f"COALESCE({_agg('COVAR_SAMP', f'{a}, {b}', ordered)}, 0) AS c_{a}__{b}" for a, b in pairs
    ]
    stat_names = [x.rsplit(" AS ", 1)[1] for x in stats]
    fields = ", ".join(
        f"CAST(NULL AS {t}) AS {f}" if f in missing else f"jsonPayload.{f} AS {f}"
        for f, t in PAYLOAD_FIELDS
        if f != "ts"
    )
    if segment is not None:
        attr = "NULL" if "attributes" in missing else f"jsonPayload.attributes.{_ident(segment)}"
        fields += f", CAST({attr} AS VARCHAR) AS segment"
        seg_col, seg_carry = ", segment", ", ANY_VALUE(f.segment) AS segment"
    else:
        seg_carry = ""
        seg_col = ", CAST(NULL AS VARCHAR) AS segment"
    # The picks from several rows, each by a total key (module docstring, "Ties").
    seg = {"segment": "segment"} if segment is not None else {}
    exposure_copy = _smallest(
        {"ts": "ts", "unit_id": "unit_id", "variant": "variant",
         "phase": "COALESCE(phase, '')", "bucket": "bucket", **seg}
    )  # fmt: skip
    outcome_copy = _smallest({"ts": "ts", "unit_id": "unit_id", "name": "name", "value": "value"})
    first = _smallest(
        {"variant": "variant", "phase": "phase", "bucket": "bucket", **seg}, ["ts", "event_id"]
    )
    weights = _smallest({"weights": "weights"}, ["weights IS NULL", "ts", "event_id"])
    overlap_s = int(overlap.total_seconds())

    def nulls(kinds: Sequence[str]) -> str:
        return ", ".join(
            f"CAST(NULL AS {k}) AS {n}" for n, k in zip(stat_names, kinds, strict=True)
        )

    no_stats = nulls(["BIGINT"] + ["DOUBLE"] * (len(stat_names) - 1))
    torn = TORN if lines else "FALSE"  # a BigQuery sink table holds typed rows, not lines
    salt = _SaltParts.of(other_salt, overlap_s, no_stats, ts_type)
    exposures = "logged_exposures" if other_salt else "exposure_events"
    sql = f"""
WITH checked AS (
  SELECT {fields}, CAST(jsonPayload.ts AS {ts_type}) AS ts, {torn} AS torn
  FROM {table_reference(table)}
  WHERE jsonPayload.type IN ('exposure', 'outcome') OR {torn}
),
src AS (
  SELECT * FROM checked WHERE NOT torn AND {COMPLETE}
),
read_check AS (
  SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN torn THEN 1 ELSE 0 END), 0) AS torn,
         COALESCE(SUM(CASE WHEN NOT torn AND NOT ({COMPLETE}) THEN 1 ELSE 0 END), 0) AS incomplete
  FROM checked
),
exposure_copies AS (
  SELECT event_id, {exposure_copy.pick}
  FROM src
  WHERE type = 'exposure' AND experiment = {_lit(experiment.key)}
    AND COALESCE(forced, FALSE) = FALSE AND unit_id IS NOT NULL AND ts IS NOT NULL{exposure_window}
  GROUP BY event_id
),
{exposures} AS (
  SELECT event_id, {exposure_copy.fields} FROM exposure_copies
),{salt.exposures}
phase_weights AS (
  -- per phase, not per event: carrying the weights list through the per-event dedup cost a
  -- third of the report's time. They are those of the phase's first exposure that has some.
  SELECT phase, {weights.fields} FROM (
    SELECT COALESCE(phase, '') AS phase, {weights.pick}
    FROM src WHERE type = 'exposure' AND experiment = {_lit(experiment.key)}
    GROUP BY COALESCE(phase, '')
  )
),
phases AS (
  -- the witnesses (a unit and its logged bucket) let analysis/salts.py check the phase's salt
  SELECT e.phase, ANY_VALUE(w.weights) AS weights, MIN(e.ts) AS start_ts, MAX(e.ts) AS end_ts,
         MIN(e.unit_id) AS witness_lo, MIN_BY(e.bucket, e.unit_id) AS bucket_lo,
         MAX(e.unit_id) AS witness_hi, MAX_BY(e.bucket, e.unit_id) AS bucket_hi
  FROM exposure_events AS e JOIN phase_weights AS w ON w.phase = e.phase
  GROUP BY e.phase
),{salt.cuts}
phase_arms AS (
  SELECT p.phase, p.start_ts, p.end_ts, arm.variant AS arm, arm.weight AS weight, arm.lo AS lo,
         arm.hi AS hi
  FROM phases AS p CROSS JOIN UNNEST(p.weights) AS u(arm)
),
unit_first AS (
  SELECT unit_id, MIN(ts) AS first_ts, {first.pick}
  FROM exposure_events GROUP BY unit_id
),
first_exposure AS (
  SELECT unit_id, first_ts, CAST(first_ts AS DATE) AS first_day, {first.fields}
  FROM unit_first
),
{salt.moved} AS (
  SELECT f.unit_id, ANY_VALUE(f.variant) AS variant, ANY_VALUE(f.phase) AS phase
  FROM first_exposure AS f
  JOIN phases AS k ON k.phase = f.phase
  JOIN phase_arms AS a ON a.phase <> k.phase
    AND (a.start_ts > k.start_ts OR a.end_ts > k.start_ts + INTERVAL {overlap_s} SECOND)
    AND f.bucket >= a.lo AND f.bucket < a.hi AND a.arm <> f.variant
  WHERE f.variant <> {_lit(HOLDOUT)}
  GROUP BY f.unit_id
),{salt.cut_off}
enrolled AS (
  SELECT f.* FROM first_exposure AS f LEFT JOIN moved AS m ON m.unit_id = f.unit_id
  WHERE m.unit_id IS NULL
),
outcome_copies AS (
  SELECT event_id, {outcome_copy.pick}
  FROM src WHERE type = 'outcome' AND {outcome_filter}
  GROUP BY event_id
),
outcome_events AS (
  SELECT event_id, {outcome_copy.fields} FROM outcome_copies
),
unit_events AS (
  SELECT unit_id, CAST(ts AS DATE) AS day, 1 AS exposures, CAST(NULL AS VARCHAR) AS name,
         CAST(NULL AS DOUBLE) AS value, ts
  FROM exposure_events
  UNION ALL
  SELECT unit_id, CAST(ts AS DATE) AS day, 0 AS exposures, name, value, ts FROM outcome_events
),
unit_days AS (
  SELECT f.unit_id, ANY_VALUE(f.variant) AS variant, ANY_VALUE(f.phase) AS phase{seg_carry},
         GREATEST(o.day, f.first_day) AS day, SUM(o.exposures) AS exposures{daily}
  FROM enrolled AS f JOIN unit_events AS o ON o.unit_id = f.unit_id{salt.censor}
  GROUP BY f.unit_id, GREATEST(o.day, f.first_day)
),
unit_running AS (
  SELECT unit_id, variant, phase{seg_col if segment else ""}, day,
         LEAD(day, 1, DATE '9999-12-31') OVER (PARTITION BY unit_id ORDER BY day NULLS FIRST)
           AS next_day{running}
  FROM unit_days
),
looks AS (
  SELECT DISTINCT day FROM unit_days
),
unit_looks AS (
  SELECT r.variant, r.phase{", r.segment" if segment else ""}, l.day AS look{carried}
  FROM unit_running AS r JOIN looks AS l ON l.day >= r.day AND l.day < r.next_day
),
unit_values AS (
  SELECT variant, phase{seg_col}, look, {", ".join(value_exprs)}
  FROM unit_looks
)
SELECT 'stats' AS kind, variant, phase, segment, look AS day, {", ".join(stats)},
       CAST(NULL AS {ts_type}) AS start_ts, CAST(NULL AS {ts_type}) AS end_ts,
       CAST(NULL AS DOUBLE) AS weight, CAST(NULL AS BIGINT) AS lo, CAST(NULL AS BIGINT) AS hi
FROM unit_values
GROUP BY variant, phase, segment, look
UNION ALL
SELECT 'phase' AS kind, witness_lo AS variant, phase, witness_hi AS segment,
       CAST(NULL AS DATE) AS day, {no_stats}, start_ts, end_ts, CAST(NULL AS DOUBLE) AS weight,
       CAST(bucket_lo AS BIGINT) AS lo, CAST(bucket_hi AS BIGINT) AS hi
FROM phases
UNION ALL
SELECT 'arm' AS kind, arm AS variant, phase, CAST(NULL AS VARCHAR) AS segment,
       CAST(NULL AS DATE) AS day, {no_stats}, start_ts, end_ts, weight,
       CAST(lo AS BIGINT) AS lo, CAST(hi AS BIGINT) AS hi
FROM phase_arms
UNION ALL
SELECT 'excluded' AS kind, variant, phase, CAST(NULL AS VARCHAR) AS segment,
       CAST(NULL AS DATE) AS day, {nulls(["BIGINT"] + ["DOUBLE"] * (len(stat_names) - 1)).replace("CAST(NULL AS BIGINT) AS n", "COUNT(*) AS n", 1)},
       CAST(NULL AS {ts_type}) AS start_ts, CAST(NULL AS {ts_type}) AS end_ts,
       CAST(NULL AS DOUBLE) AS weight, CAST(NULL AS BIGINT) AS lo, CAST(NULL AS BIGINT) AS hi
FROM moved{salt.excluded_filter}
GROUP BY variant, phase{salt.cut_rows}{"".join(_read_check_row(what, no_stats, ts_type) for what in READ_CHECKS)}
"""
    if dialect == "duckdb":
        return QueryPlan(tuple(metric_cols), tuple(columns), tuple(pairs), sql)
    import sqlglot  # only for BigQuery: importing it costs a local report ~0.3 s

    tree = sqlglot.parse_one(sql, read="duckdb").transform(_bigquery_smallest)
    out = tree.sql(dialect=dialect, pretty=True)
    return QueryPlan(tuple(metric_cols), tuple(columns), tuple(pairs), out)


@dataclass(frozen=True, slots=True)
class _SaltParts:
    """The pieces of ``build_plan``'s statement that leave out the phases served under another
    salt (its ``other_salt``). Without such phases every piece is empty (and ``moved`` keeps its
    name), so the statement is exactly the one of an experiment whose salt never changed."""

    exposures: str = ""
    cuts: str = ""
    moved: str = "moved"
    cut_off: str = ""
    censor: str = ""
    excluded_filter: str = ""
    cut_rows: str = ""

    @classmethod
    def of(cls, other: frozenset[str], overlap_s: int, no_stats: str, ts_type: str) -> _SaltParts:
        """The pieces for the phase ids ``other`` (none: the unchanged statement)."""
        if not other:
            return cls()
        ids = ", ".join(_lit(p) for p in sorted(other))
        holdout = _lit(HOLDOUT)
        n = no_stats.replace("CAST(NULL AS BIGINT) AS n", "COALESCE(u.n, 0) AS n", 1)
        return cls(
            exposures=f"""
exposure_events AS (
  SELECT * FROM logged_exposures WHERE phase NOT IN ({ids})
),
other_exposures AS (
  SELECT phase, ts FROM logged_exposures WHERE phase IN ({ids})
),""",
            cuts=f"""
other_spans AS (
  SELECT phase, MIN(ts) AS start_ts, MAX(ts) AS end_ts FROM other_exposures GROUP BY phase
),
salt_cuts AS (
  -- per phase k: the first exposure under another salt that can reach k's units: of a phase
  -- started after k (unless it ended within the overlap while k went on: replicas switching to
  -- k, seen so when the window starts at the switch), or past the overlap of an earlier one
  SELECT k.phase, MIN(o.ts) AS cut_ts
  FROM phases AS k
  JOIN other_exposures AS o ON o.ts > k.start_ts
  JOIN other_spans AS s ON s.phase = o.phase
  WHERE o.ts > k.start_ts + INTERVAL {overlap_s} SECOND
     OR s.start_ts > k.start_ts
        AND NOT (s.end_ts <= k.start_ts + INTERVAL {overlap_s} SECOND AND s.end_ts < k.end_ts)
  GROUP BY k.phase
),""",
            moved="moved_by_bucket",
            cut_off="""
cut_off AS (
  SELECT f.unit_id, f.variant, f.phase
  FROM first_exposure AS f JOIN salt_cuts AS c ON c.phase = f.phase
  WHERE f.first_ts >= c.cut_ts
),
moved AS (
  SELECT unit_id, ANY_VALUE(variant) AS variant, ANY_VALUE(phase) AS phase
  FROM (SELECT * FROM moved_by_bucket UNION ALL SELECT * FROM cut_off) AS m
  GROUP BY unit_id
),""",
            censor="""
  LEFT JOIN salt_cuts AS c ON c.phase = f.phase
  WHERE c.cut_ts IS NULL OR o.ts < c.cut_ts""",
            excluded_filter=f"\nWHERE variant <> {holdout}",
            cut_rows=f"""
UNION ALL
SELECT 'cut' AS kind, CAST(NULL AS VARCHAR) AS variant, c.phase, CAST(NULL AS VARCHAR) AS segment,
       CAST(NULL AS DATE) AS day, {n}, c.cut_ts AS start_ts, CAST(NULL AS {ts_type}) AS end_ts,
       CAST(NULL AS DOUBLE) AS weight, CAST(NULL AS BIGINT) AS lo, CAST(NULL AS BIGINT) AS hi
FROM salt_cuts AS c LEFT JOIN (
  SELECT phase, COUNT(*) AS n FROM cut_off WHERE variant <> {holdout} GROUP BY phase
) AS u ON u.phase = c.phase""",
        )


def skipped_by_file_sql(relation: str) -> str:
    """Per file of ``relation`` (a ``read_json`` with ``filename = true``): the lines the report
    skips, torn and incomplete, as ``build_plan(lines=True)`` counts them. Files without any
    are left out."""
    fields = ", ".join(f"jsonPayload.{f} AS {f}" for f, _ in PAYLOAD_FIELDS if f != "ts")
    return f"""
SELECT filename, SUM(CASE WHEN torn THEN 1 ELSE 0 END) AS torn,
       SUM(CASE WHEN NOT torn AND NOT ({COMPLETE}) THEN 1 ELSE 0 END) AS incomplete
FROM (
  SELECT filename, {fields}, CAST(jsonPayload.ts AS TIMESTAMP) AS ts, {TORN} AS torn
  FROM {relation}
  WHERE jsonPayload.type IN ('exposure', 'outcome') OR {TORN}
)
GROUP BY filename
HAVING SUM(CASE WHEN torn OR NOT ({COMPLETE}) THEN 1 ELSE 0 END) > 0
ORDER BY filename
"""


def _read_check_row(what: str, no_stats: str, ts_type: str) -> str:
    """One 'read' row of the result: ``variant`` names the count (READ_CHECKS), ``n`` holds it."""
    stats = no_stats.replace("CAST(NULL AS BIGINT) AS n", f"CAST({what} AS BIGINT) AS n", 1)
    return f"""
UNION ALL
SELECT 'read' AS kind, {_lit(what)} AS variant, CAST(NULL AS VARCHAR) AS phase,
       CAST(NULL AS VARCHAR) AS segment, CAST(NULL AS DATE) AS day, {stats},
       CAST(NULL AS {ts_type}) AS start_ts, CAST(NULL AS {ts_type}) AS end_ts,
       CAST(NULL AS DOUBLE) AS weight, CAST(NULL AS BIGINT) AS lo, CAST(NULL AS BIGINT) AS hi
FROM read_check"""


@dataclass(frozen=True, slots=True)
class _Smallest:
    """Per group, some values of the group's row with the smallest key (module docstring,
    "Ties"): ``pick`` the aggregate (``... AS pick``, a struct), ``fields`` its values as
    columns (``pick.a AS a, ...``) in a query over the aggregate's result."""

    pick: str
    fields: str


def _smallest(values: Mapping[str, str], key: Sequence[str] = ()) -> _Smallest:
    """``values`` (name -> expression) of the row with the smallest ``key``, a tuple compared
    element by element with NULL after any value; without ``key``, the smallest ``values``.

    In DuckDB ``ARG_MIN`` of a struct (it skips a row whose value is NULL, and a NULL attribute
    is a value here) by a tuple, or ``MIN`` of the struct, which compares the same way and
    keeps one struct per group instead of two (the per-event deduplication's memory).
    ``_bigquery_smallest`` rewrites both for BigQuery, which orders no struct.
    """
    struct = "{" + ", ".join(f"{_lit(name)}: {expr}" for name, expr in values.items()) + "}"
    if len(key) == 1:
        raise ValueError("a tuple key has two expressions or more")  # (x) is no tuple
    pick = f"ARG_MIN({struct}, ({', '.join(key)}))" if key else f"MIN({struct})"
    return _Smallest(f"{pick} AS pick", ", ".join(f"pick.{name} AS {name}" for name in values))


def _bigquery_smallest(node: Any) -> Any:
    """A sqlglot transform: DuckDB's ``ARG_MIN(v, (k1, k2, ...))``, and ``MIN`` of a struct
    ``{'a': k1, 'b': k2, ...}``, as ``ARRAY_AGG(v ORDER BY k1 IS NULL, k1, k2 IS NULL, k2, ...
    LIMIT 1)[OFFSET(0)]``.

    BigQuery's MIN and MIN_BY take no struct (a STRUCT is not orderable there), and its ORDER
    BY puts NULL first where DuckDB's comparison of tuples and structs puts it last:
    ``k IS NULL`` before each ``k`` makes the two orders one.
    """
    from sqlglot import exp

    if isinstance(node, exp.ArgMin) and isinstance(node.expression, exp.Tuple):
        value, key = node.this, node.expression.expressions
    elif isinstance(node, exp.Min) and isinstance(node.this, exp.Struct):
        value, key = node.this, [field.expression for field in node.this.expressions]
    else:
        return node
    order = []
    for k in key:  # nulls_first: BigQuery's own default, said so (no NULLS clause is written)
        is_null = exp.Is(this=k.copy(), expression=exp.Null())
        order += [
            exp.Ordered(this=is_null, nulls_first=True),
            exp.Ordered(this=k.copy(), nulls_first=True),
        ]
    first = exp.Limit(
        this=exp.Order(this=value.copy(), expressions=order), expression=exp.Literal.number(1)
    )
    return exp.Bracket(this=exp.ArrayAgg(this=first), expressions=[exp.Literal.number(0)], offset=0)


def _agg(function: str, args: str, ordered: bool) -> str:
    """``function(args)``; ``ordered``: with ``ORDER BY args`` (DuckDB), which makes a floating
    aggregate a function of its multiset of inputs (module docstring, "Reproducible")."""
    return f"{function}({args} ORDER BY {args})" if ordered else f"{function}({args})"


def _counters(
    index: Mapping[str, int], used: str, cuped_window: timedelta | None, *, ordered: bool
) -> list[tuple[str, str]]:
    """Per (unit, day): the counts and value sums of each outcome that some metric reads.

    ``cnt_j``/``sum_j`` count outcome j at or after the unit's first exposure; with CUPED,
    ``pre_cnt_j``/``pre_sum_j`` count it in the window before (those land on the enrolment day).
    ``ordered``: the value sums add in value order (``_agg``), so they are reproducible.
    """
    windows = [("", "o.ts >= f.first_ts")]
    if cuped_window is not None:
        secs = int(cuped_window.total_seconds())
        windows.append(
            ("pre_", f"o.ts < f.first_ts AND o.ts >= f.first_ts - INTERVAL {secs} SECOND")
        )
    out: list[tuple[str, str]] = []
    for n, j in index.items():
        is_n = f"o.name = {_lit(n)}"
        for prefix, window in windows:
            # Only the per-unit columns some metric reads, to keep the scan lean.
            if re.search(rf"\b{prefix}cnt_{j}\b", used):
                out.append((f"{prefix}cnt_{j}", f"COUNT(CASE WHEN {is_n} AND {window} THEN 1 END)"))
            if re.search(rf"\b{prefix}sum_{j}\b", used):
                total = (
                    f"{_agg('SUM', 'o.value', True)} FILTER (WHERE {is_n} AND {window})"
                    if ordered
                    else f"SUM(CASE WHEN {is_n} AND {window} THEN o.value END)"
                )
                out.append((f"{prefix}sum_{j}", f"COALESCE({total}, 0)"))
    return out


def table_reference(table: str) -> str:
    """A (possibly dotted, ``project.dataset.table``) name, quoted in DuckDB's dialect."""
    parts = table.split(".")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"table {table!r} is not NAME, DATASET.NAME or PROJECT.DATASET.NAME")
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def column_names(plan: QueryPlan) -> Sequence[str]:
    """Result columns after ``variant, day, n``, in order."""
    out = [name for c in plan.columns for name in (f"m_{c}", f"v_{c}")]
    return out + [f"c_{a}__{b}" for a, b in plan.cov_pairs]


@dataclass(frozen=True, slots=True)
class Look:
    """Sufficient statistics of one variant as the report would have seen them on ``day``.

    The units whose first exposure came before the end of UTC day ``day`` (or ``until``, if
    earlier), each with its metric values from the events logged by then. ``stats.count`` is
    cumulative: units enrolled on ``day`` are those of this look minus those of the previous.
    ``phase`` is the allocation phase the units enrolled in ("" for records without one) and
    ``segment`` the value of the ``--by`` attribute at their first exposure (None without).
    """

    variant: str
    day: date
    stats: Aggregates
    phase: str = ""
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class PhaseRecord:
    """A phase as the archive shows it: first and last exposure, its arms' weights/ranges, and
    its witnesses: the units with the smallest and the largest id among its exposures, each with
    its logged bucket (a unit logged without one is no witness: records written before
    exposures carried a bucket have none). A bucket is ``bucket(salt, unit_id)``, so a witness
    tells whether the phase was served under a salt (analysis/salts.py)."""

    id: str
    start: datetime
    end: datetime
    arms: tuple[tuple[str, float, int, int], ...]  # (variant, weight, lo, hi), in bucket order
    witnesses: tuple[tuple[str, int], ...] = ()  # (unit_id, logged bucket)


@dataclass(frozen=True, slots=True)
class SaltCut:
    """Where a phase's units stop being counted because another salt was served after it:
    ``at`` is the first such exposure (``build_plan``'s ``other_salt``), ``units`` the units
    first exposed at or after it (holdout units aside), excluded."""

    at: datetime
    units: int


@dataclass(frozen=True, slots=True)
class ReadCount:
    """What the query read: exposure/outcome records and lines that were no log entry.

    ``total`` counts both; ``torn`` the lines that are not a JSON object with a ``jsonPayload``
    or ``logName`` (a cut-short write, garbage); ``incomplete`` the exposure/outcome records
    missing a required field or with an unparsable ``ts``. Both are left out of the figures.
    """

    total: int = 0
    torn: int = 0
    incomplete: int = 0

    @property
    def skipped(self) -> int:
        """Lines left out of the figures."""
        return self.torn + self.incomplete


@dataclass(frozen=True, slots=True)
class Scan:
    """What the query returns: the looks, the phases, the units excluded per phase and arm,
    what was read (and skipped), and the salt cuts of the phases (``other_salt``)."""

    looks: list[Look]
    phases: list[PhaseRecord]
    excluded: dict[str, dict[str, int]]  # phase -> variant -> units excluded (bucket, salt cut)
    read: ReadCount = ReadCount()
    cuts: dict[str, SaltCut] = field(default_factory=dict)  # phase -> cut (``other_salt``)


def _as_date(day: Any) -> date:
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, str):
        return date.fromisoformat(day[:10])
    return day  # type: ignore[no-any-return]


def _as_time(ts: Any) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)  # type: ignore[no-any-return]


def _row_order(row: Mapping[str, Any]) -> tuple[tuple[bool, str], ...]:
    """A total order of the result rows by their keys (None first)."""
    return tuple(
        (row[k] is not None, "" if row[k] is None else str(row[k]))
        for k in ("kind", "variant", "phase", "segment", "day")
    )


def scan_from_rows(plan: QueryPlan, rows: Iterable[Mapping[str, Any]]) -> Scan:
    """Turn the query's result rows (as mappings of column name to value) into a ``Scan``."""
    looks: list[Look] = []
    spans: dict[str, tuple[datetime, datetime]] = {}
    witnesses: dict[str, tuple[tuple[str, int], ...]] = {}
    arms: dict[str, list[tuple[str, float, int, int]]] = {}
    excluded: dict[str, dict[str, int]] = {}
    cuts: dict[str, SaltCut] = {}
    read: dict[str, int] = {}
    # In a fixed order whatever order the engine returned them in: the looks of one (day,
    # phase, variant) merge in this order, and dicts keep it, so the report's bytes do not
    # depend on the engine's threads.
    for r in sorted(rows, key=_row_order):
        kind = r["kind"]
        if kind == "stats":
            mean = {c: float(r[f"m_{c}"]) for c in plan.columns}
            var = {c: float(r[f"v_{c}"]) for c in plan.columns}
            cov = {(a, b): float(r[f"c_{a}__{b}"]) for a, b in plan.cov_pairs}
            stats = Aggregates(int(r["n"]), mean, var, cov)
            segment = None if r["segment"] is None else str(r["segment"])
            looks.append(
                Look(str(r["variant"]), _as_date(r["day"]), stats, str(r["phase"]), segment)
            )
        elif kind == "phase":
            pid = str(r["phase"])
            spans[pid] = (_as_time(r["start_ts"]), _as_time(r["end_ts"]))
            # the 'phase' row carries its witnesses: units in variant/segment, buckets in lo/hi
            witnesses[pid] = tuple(
                dict.fromkeys(
                    (str(unit), int(b))
                    for unit, b in ((r["variant"], r["lo"]), (r["segment"], r["hi"]))
                    if unit is not None and b is not None
                )
            )
        elif kind == "cut":
            cuts[str(r["phase"])] = SaltCut(_as_time(r["start_ts"]), int(r["n"]))
        elif kind == "arm":
            arms.setdefault(str(r["phase"]), []).append(
                (str(r["variant"]), float(r["weight"]), int(r["lo"]), int(r["hi"]))
            )
        elif kind == "excluded":
            excluded.setdefault(str(r["phase"]), {})[str(r["variant"])] = int(r["n"])
        elif kind == "read":
            read[str(r["variant"])] = int(r["n"] or 0)
    phases = [
        PhaseRecord(
            pid,
            start,
            end,
            tuple(sorted(arms.get(pid, ()), key=lambda a: a[2])),
            witnesses.get(pid, ()),
        )
        for pid, (start, end) in sorted(spans.items(), key=lambda kv: kv[1][0])
    ]
    return Scan(looks, phases, excluded, ReadCount(**read), cuts)
