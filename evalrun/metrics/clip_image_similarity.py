"""How much of the input an edit preserves: cosine of input and edited CLIP image embeddings."""

from __future__ import annotations

import torch

from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult
from evalrun.metrics.edit_embeddings import EditCLIPMetric
from evalrun.metrics.functional.edit import image_similarity


class CLIPImageSimilarity(EditCLIPMetric):
    """Mean over edits of cos(E_img(input), E_img(edited)), the guide's extension of the
    directional metric. Higher means more of the input survived (1.0: the edit changed
    nothing CLIP sees); read it next to ``clip_directional``, since an edit that does
    nothing preserves everything."""

    name = "clip_image_similarity"

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-large-patch14",
                 batch_size: int = 64) -> None:
        super().__init__(context, clip_model, batch_size)
        self._scores: list[torch.Tensor] = []

    def update(self, batch: ImageBatch) -> None:
        self._scores.append(image_similarity(*self.image_pair(batch)))

    def compute(self) -> MetricResult:
        scores = torch.cat(self._scores) if self._scores else torch.empty(0, dtype=torch.float64)
        return MetricResult(
            values={"clip_image_similarity": float(scores.mean()) if len(scores) else float("nan")},
            per_image={"clip_image_similarity": scores.tolist()},
            info={**self.base_info(), "clip_image_similarity_n": len(scores)},
        )
