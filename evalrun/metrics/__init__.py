"""Metrics: pure math in ``functional``, thin stateful classes around it, backbones in ``features``.

For images in memory (notebooks), as torchmetrics users expect::

    from evalrun.metrics import FID, CLIPScore        # or create("fid", ...) by config name
    fid = FID(reference="real_images/")               # a folder, a dataset config dict, or an .npz
    fid.update(images)                                # uint8 (N, 3, H, W) tensor/array, or PIL images
    fid.compute().values                              # {"fid": ...}; .info says what it depends on
    clip = CLIPScore(clip_model="openai/clip-vit-base-patch16")
    clip.update(images, prompts=["a red cube", ...])
"""

from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult, Output
from evalrun.metrics.registry import (ADMPrecisionRecall, CLIPDirectionalSimilarity, CLIPImageSimilarity, CLIPScore,
                                      CMMD, FD, FID, HPS, KID, METRICS, PRDC, SFID, Diversity, FDDINOv2, FIDInfinity,
                                      ImageReward, InceptionScore, PickScore, build_metric, create, metric_class)

__all__ = ["ImageBatch", "Metric", "MetricContext", "MetricResult", "Output", "METRICS", "build_metric", "create",
           "metric_class", "FID", "KID", "InceptionScore", "CMMD", "FD", "FDDINOv2", "SFID", "PRDC", "ADMPrecisionRecall",
           "FIDInfinity", "CLIPScore", "CLIPDirectionalSimilarity", "CLIPImageSimilarity", "PickScore", "HPS",
           "ImageReward", "Diversity"]
