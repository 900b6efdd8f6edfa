"""CMMD (Jayasumana et al., CVPR 2024): MMD between CLIP image embeddings of the generated
and the reference images, with a Gaussian RBF kernel."""

from __future__ import annotations

from typing import Any

from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.settings import setting_number
from evalrun.metrics.common import ExtractorMetric


class CMMD(ExtractorMetric):
    """``scale * MMD^2`` (biased V-statistic) with k(x, y) = exp(-|x-y|^2 / (2 sigma^2)) on
    L2-normalised CLIP image embeddings, as the paper's reference code computes it.

    Images are preprocessed by the checkpoint's own CLIPImageProcessor from uint8 (resize
    of the shortest edge, bicubic, then centre crop): the paper's code centre-crops and
    resizes with PIL bicubic instead, which can differ slightly for non-square images.
    Reference embeddings are cached like Inception features, keyed by the CLIP weights hash.
    """

    name = "cmmd"
    outputs = (Output("cmmd", "lower", fmt=".3f", label="CMMD"),)
    needs_reference = True
    min_images = 1

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-large-patch14-336",
                 sigma: float = 10.0, scale: float = 1000.0, batch_size: int = 32) -> None:
        sigma, scale = (setting_number(self.name, "sigma", sigma, positive=True),
                        setting_number(self.name, "scale", scale, positive=True))
        super().__init__(context, "clip", {"path": str(clip_model), "batch_size": batch_size,
                                           "key": f"metrics.{self.name}.clip_model"})
        self.clip_model, self.sigma, self.scale = str(clip_model), sigma, scale
        self._embeddings: list = []

    def load_reference(self) -> None:
        self._reference = self.reference.features(self.extractor, self.layer, self.name)

    def update(self, batch: ImageBatch) -> None:
        self._embeddings.append(self.features(batch))

    def compute(self) -> MetricResult:
        import numpy as np
        import torch

        from evalrun.metrics.functional.clip import normalize
        from evalrun.metrics.functional.mmd import rbf_mmd2

        gen = torch.from_numpy(np.concatenate(self._embeddings)) if self._embeddings else torch.empty(0, self.extractor.dim)
        ref, ref_info = self._reference
        value = rbf_mmd2(normalize(gen).numpy(), normalize(torch.from_numpy(ref)).numpy(), self.sigma, self.scale,
                         device=self.context.device)
        info = {**self.extractor_info(), **ref_info, "cmmd_n_generated": len(gen), "cmmd_sigma": self.sigma,
                "cmmd_scale": self.scale, "cmmd_estimator": "biased V-statistic (all pairs, diagonals kept), float64",
                "cmmd_embeddings": "L2-normalised projected CLIP image embeddings",
                "cmmd_preprocessing": "checkpoint's CLIPImageProcessor on uint8 (shortest-edge bicubic resize, centre crop)"}
        return MetricResult(values={"cmmd": value}, info=info)

    def settings(self) -> dict[str, Any]:
        return {**self.reference_settings(), "clip_model": self.clip_model,
                "weights_sha256": self.extractor_settings()["weights_sha256"], "sigma": self.sigma, "scale": self.scale}
