"""Why a model version was promoted: the experiment evidence, as MLflow tags and as JSON.

``abgate registry promote --experiment`` builds one ``Evidence`` from the experiment's report
and writes it twice: as ``abgate.promotion.*`` tags on the MLflow model version (so MLflow's UI
says why a version is champion) and as the ``evidence`` of the alias move in
``model_alias_history`` (so abgate's history says it too). The values are plain: this package
never imports analysis.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

TAG_PREFIX = "abgate.promotion."


@dataclass(frozen=True, slots=True)
class Evidence:
    """The experiment result behind one promotion (or the override of a refusal).

    Numbers are as the report gives them (``None`` where undefined). ``source`` is
    ``archive`` or ``bigquery``; ``archive_digest`` covers the content of every file the
    report read (see ``abgate.promotion.archive_digest`` in docs/ml-engineers.md).
    """

    alias: str
    experiment: str
    variant: str
    control: str
    decision: str  # the verdict for this variant: ship, do_not_ship, keep_running, invalid
    decision_reason: str
    metric: str | None
    lift: float | None
    lift_ci: tuple[float | None, float | None]
    p_value: float | None
    p_value_adjusted: float | None
    alpha: float
    units: dict[str, int]
    window_since: str | None  # the --since/--until of the report (None: open)
    window_until: str | None
    first_exposure_day: str | None  # the data's first and last enrolment days
    last_exposure_day: str | None
    source: str
    config_version: int
    config_sha256: str
    report_at: str
    promoted_by: str
    promoted_at: str
    guardrails: dict[str, str] = field(default_factory=dict)
    archive: str | None = None
    archive_digest: str | None = None
    archive_files: int | None = None
    archive_bytes: int | None = None
    bigquery_table: str | None = None
    forced: bool = False
    force_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``model_alias_history.evidence``."""
        out = asdict(self)
        out["lift_ci"] = list(self.lift_ci)
        return out

    def tags(self) -> dict[str, str]:
        """``abgate.promotion.*`` tags (MLflow tag values are strings; absent values left out)."""
        d = self.to_dict()
        units = d.pop("units")
        guardrails = d.pop("guardrails")
        tags = {
            TAG_PREFIX + k: _text(v)
            for k, v in d.items()
            if v is not None and not (k == "force_reason" and not self.forced)
        }
        tags.update({f"{TAG_PREFIX}units.{arm}": str(n) for arm, n in units.items()})
        tags.update({f"{TAG_PREFIX}guardrail.{m}": state for m, state in guardrails.items()})
        return tags


def _text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return json.dumps(v)
    return str(v)
