"""Frechet distance on any registered backbone (``fd``), FD_DINOv2 as EDM2 computes it (``fd_dinov2``)
and the ADM evaluator's sFID (``sfid``). The math and the bookkeeping are frechet.py's; these
classes only choose the backbone and layer.

- ``fd``: ``metrics.fd.feature_extractor=inception|dinov2|clip|torchscript|python`` (or a
  ``_target_`` mapping); column ``fd``. One backbone per run (the column has one name): FD on
  DINOv2 beside FID is ``fd_dinov2``.
- ``fd_dinov2``: a metric of its own (not a yaml preset of ``fd``) so that its column is
  ``fd_dinov2`` and it can sit beside ``fid`` and an ``fd`` on a third backbone in one run, as
  EDM2's tables put FID and FD_DINOv2 side by side. DINOv2 ViT-L/14 through transformers
  (features/dinov2.py: EDM2's preprocessing and embedding).
- ``sfid``: Inception's ``mixed_6/conv`` features (Mixed_6d.branch1x1, 7 channels, 2023-d) as the
  ADM evaluator takes them (Nash et al. 2021); against an ADM reference batch its statistics are
  the file's ``mu_s``/``sigma_s``.
"""

from __future__ import annotations

from typing import Any

from evalrun.metrics.backbone import backbone, describe
from evalrun.metrics.base import MetricContext, Output
from evalrun.metrics.bootstrap_ci import ci_outputs
from evalrun.metrics.frechet import FrechetMetric


class FD(FrechetMetric):
    """Frechet distance on ``feature_extractor``'s ``feature_layer`` (default: its embedding / pool3)."""

    name = "fd"
    outputs = (Output("fd", "lower", fmt=".2f", label="FD"), *ci_outputs("fd", fmt=".2f"))

    def __init__(self, context: MetricContext | None = None, feature_extractor: Any = "inception",
                 feature_extractor_path: str | None = None, feature_extractor_weights_sha256: str = "official",
                 feature_extractor_target: str | None = None, feature_extractor_kwargs: dict | None = None,
                 feature_extractor_options: dict | None = None, feature_layer: str | None = None, resize: Any = None,
                 batch_size: int = 50, bootstrap: int = 0, bootstrap_seed: int | None = None,
                 bootstrap_reference: bool = True) -> None:
        name, options = backbone(self.name, feature_extractor, feature_extractor_path, feature_extractor_weights_sha256,
                                 feature_extractor_target, feature_extractor_kwargs, resize, batch_size,
                                 feature_extractor_options)
        self.backbone_name = describe(name, options)
        super().__init__(context, name, options, feature_layer, bootstrap, bootstrap_seed, bootstrap_reference)

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["feature_extractor"] = self.backbone_name
        if self.extractor is not None and getattr(self.extractor, "resize", None) is not None:
            out["resize"] = "x".join(map(str, self.extractor.resize))
        return out


class FDDINOv2(FrechetMetric):
    """FD_DINOv2 (Stein et al. 2023) as EDM2's ``calculate_metrics.py``: DINOv2 ViT-L/14 CLS embedding."""

    name = "fd_dinov2"
    outputs = (Output("fd_dinov2", "lower", fmt=".2f", label="FD_DINOv2"), *ci_outputs("fd_dinov2", fmt=".2f"))

    def __init__(self, context: MetricContext | None = None, feature_extractor_path: str = "facebook/dinov2-large",
                 pos_embedding: str = "hub", batch_size: int = 64, bootstrap: int = 0,
                 bootstrap_seed: int | None = None, bootstrap_reference: bool = True) -> None:
        options = {"path": str(feature_extractor_path), "pos_embedding": pos_embedding, "batch_size": batch_size,
                   "key": f"metrics.{self.name}.feature_extractor_path"}
        super().__init__(context, "dinov2", options, "embedding", bootstrap, bootstrap_seed, bootstrap_reference)
        self.model_name, self.pos_embedding = str(feature_extractor_path), pos_embedding

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        return {**out, "model": self.model_name, "pos_embedding": self.pos_embedding}


class SFID(FrechetMetric):
    """sFID: Frechet distance on Inception's ``mixed_6/conv`` spatial features, as the ADM evaluator."""

    name = "sfid"
    outputs = (Output("sfid", "lower", fmt=".2f", label="sFID"), *ci_outputs("sfid", fmt=".2f"))

    def __init__(self, context: MetricContext | None = None, feature_extractor_weights_path: str | None = None,
                 feature_extractor_weights_sha256: str = "official", batch_size: int = 50, bootstrap: int = 0,
                 bootstrap_seed: int | None = None, bootstrap_reference: bool = True) -> None:
        options = {"path": feature_extractor_weights_path, "batch_size": batch_size,
                   "weights_sha256": feature_extractor_weights_sha256,
                   "key": f"metrics.{self.name}.feature_extractor_weights_path"}
        super().__init__(context, "inception", options, "spatial", bootstrap, bootstrap_seed, bootstrap_reference)
