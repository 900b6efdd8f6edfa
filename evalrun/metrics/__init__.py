"""Metrics: pure math in ``functional``, thin stateful classes around it, backbones in ``features``.

For images in memory (notebooks), as torchmetrics users expect::

    from evalrun.metrics import create
    fid = create("fid", reference="real_images/")     # a folder, a dataset config dict, or an .npz
    fid.add(images)                                    # uint8 (N, 3, H, W) tensor/array, or PIL images
    fid.compute().values                               # {"fid": ...}; .info says what it depends on
"""

from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult, Output
from evalrun.metrics.registry import METRICS, build_metric, create, metric_class

__all__ = ["ImageBatch", "Metric", "MetricContext", "MetricResult", "Output", "METRICS", "build_metric", "create",
           "metric_class"]
