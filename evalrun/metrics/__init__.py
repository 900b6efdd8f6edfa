"""Metrics: pure math in ``functional``/per-metric modules, thin stateful classes around it."""

from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult
from evalrun.metrics.registry import METRICS, build_metric, metric_class

__all__ = ["ImageBatch", "Metric", "MetricContext", "MetricResult", "METRICS", "build_metric", "metric_class"]
