"""kind -> estimator: the one place that knows every metric kind.

Adding a kind: a module with its ``MetricEstimator`` subclass, one entry here, and the name in
``experiments.MetricKind`` (the schema that validates experiment files; a test checks that the
two agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from analysis.metrics.base import MetricColumns, MetricEstimator
from analysis.metrics.mean import MeanMetric
from analysis.metrics.proportion import ProportionMetric
from analysis.metrics.ratio import RatioMetric
from experiments import Metric

ESTIMATORS: Mapping[str, MetricEstimator] = MappingProxyType(
    {e.kind: e for e in (ProportionMetric(), MeanMetric(), RatioMetric())}
)


def estimator_for(metric: Metric | MetricColumns) -> MetricEstimator:
    """The estimator of a metric's kind; ValueError naming the metric for an unknown kind."""
    m = metric.metric if isinstance(metric, MetricColumns) else metric
    try:
        return ESTIMATORS[m.kind]
    except KeyError:
        raise ValueError(
            f"metric {m.name}: unknown kind {m.kind!r} (known: {', '.join(ESTIMATORS)})"
        ) from None
