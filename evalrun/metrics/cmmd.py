"""CMMD (Jayasumana et al., CVPR 2024): MMD between CLIP image embeddings of the generated
and the reference images, with a Gaussian RBF kernel."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from evalrun.errors import ConfigError
from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult
from evalrun.metrics.clip_models import ClipBundle, encode_images, load_clip
from evalrun.metrics.functional.clip import normalize
from evalrun.metrics.functional.mmd import rbf_mmd2
from evalrun.reference import ReferenceSpec, reference_features

_WEIGHTS_SHA: dict[int, str] = {}


def vision_weights_sha256(bundle: ClipBundle) -> str:
    """sha256 over the tensors that produce image embeddings (vision tower + projection).

    Hashing the loaded tensors (not files) gives one identity for a hub id, a local copy
    or a re-saved checkpoint; once per process per model.
    """
    if id(bundle) not in _WEIGHTS_SHA:
        digest = hashlib.sha256()
        for prefix, module in (("vision_model.", bundle.model.vision_model), ("visual_projection.", bundle.model.visual_projection)):
            for name, tensor in sorted(module.state_dict().items()):
                digest.update((prefix + name + str(tuple(tensor.shape)) + str(tensor.dtype)).encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        _WEIGHTS_SHA[id(bundle)] = digest.hexdigest()
    return _WEIGHTS_SHA[id(bundle)]


class CMMD(Metric):
    """``scale * MMD^2`` (biased V-statistic) with k(x, y) = exp(-|x-y|^2 / (2 sigma^2)) on
    L2-normalised CLIP image embeddings, as the paper's reference code computes it.

    Images are preprocessed by the checkpoint's own CLIPImageProcessor from uint8 (resize
    of the shortest edge, bicubic, then centre crop): the paper's code centre-crops and
    resizes with PIL bicubic instead, which can differ slightly for non-square images.
    Reference embeddings are cached like Inception features, keyed by the CLIP weights hash.
    """

    name = "cmmd"
    higher_is_better = False
    kind = "set"

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-large-patch14-336",
                 sigma: float = 10.0, scale: float = 1000.0, batch_size: int = 32) -> None:
        super().__init__(context)
        if sigma <= 0 or scale <= 0 or int(batch_size) < 1:
            raise ConfigError(f"cmmd needs sigma > 0, scale > 0, batch_size >= 1; got {sigma}, {scale}, {batch_size}")
        self.clip_model, self.sigma, self.scale, self.batch_size = clip_model, float(sigma), float(scale), int(batch_size)
        self.reference = ReferenceSpec.from_config(self.context.reference, self.name)
        self._reference = None
        self.bundle = load_clip(clip_model, self.context.device)
        self._embeddings: list[torch.Tensor] = []

    def _embed(self, images: torch.Tensor) -> np.ndarray:
        return encode_images(self.bundle, images, self.batch_size).numpy()

    def cache_id(self) -> dict[str, Any]:
        import transformers

        return {"extractor": "clip-image-embedding", "clip_model": self.clip_model,
                "weights_sha256": vision_weights_sha256(self.bundle),
                "embedding": "visual_projection(vision_model.pooler_output), unnormalised float32",
                "processor": self.bundle.processor.image_processor.to_dict(), "transformers": transformers.__version__}

    def prepare(self):
        """Reference statistics, computed (or read from the cache) once, before generation."""
        if self._reference is None:
            self._reference = reference_features(self.reference, self.cache_id(), self._embed, self.context.cache_dir,
                                           self.batch_size)
        return self._reference

    def update(self, batch: ImageBatch) -> None:
        self._embeddings.append(torch.from_numpy(self._embed(batch.images)))

    def compute(self) -> MetricResult:
        gen = torch.cat(self._embeddings) if self._embeddings else torch.empty(0, self.bundle.model.config.projection_dim)
        ref, ref_info = self.prepare()
        value = rbf_mmd2(normalize(gen).numpy(), normalize(torch.from_numpy(ref)).numpy(), self.sigma, self.scale,
                         device=self.context.device)
        info = {**self.bundle.info(), **ref_info, "cmmd_n_generated": len(gen), "cmmd_sigma": self.sigma,
                "cmmd_scale": self.scale, "cmmd_estimator": "biased V-statistic (all pairs, diagonals kept), float64",
                "cmmd_embeddings": "L2-normalised projected CLIP image embeddings",
                "cmmd_preprocessing": "checkpoint's CLIPImageProcessor on uint8 (shortest-edge bicubic resize, centre crop)",
                "clip_weights_sha256": vision_weights_sha256(self.bundle)}
        return MetricResult(values={"cmmd": value}, info=info)

    def settings(self) -> dict[str, Any]:
        return {"reference": self.reference.describe(), "clip_model": self.clip_model, "sigma": self.sigma,
                "scale": self.scale}
