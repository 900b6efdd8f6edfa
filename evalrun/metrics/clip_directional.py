"""CLIP directional similarity of edits (Gal et al. 2021; the diffusers guide's definition)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult
from evalrun.metrics.edit_embeddings import EditCLIPMetric, captions
from evalrun.metrics.functional.edit import ZERO_DIRECTION_TOL, directional_similarity

log = logging.getLogger(__name__)


class CLIPDirectionalSimilarity(EditCLIPMetric):
    """Mean over edits of cos(edited - input image embedding, output - input caption embedding).

    Embeddings are L2-normalised before the differences, as in the guide. An edit whose
    image direction is zero (edited image identical to its input) or whose text direction
    is zero (identical captions) scores 0.0 by definition; such edits are counted in
    ``run.json`` (``clip_directional_zero_image_direction`` / ``..._zero_text_direction``),
    flagged per image in ``per_image.csv`` (``clip_directional_zero_direction``), and a
    warning names how many there are, so they never silently move the mean.
    """

    name = "clip_directional"

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-large-patch14",
                 batch_size: int = 64, input_text_key: str = "input_caption",
                 output_text_key: str = "output_caption") -> None:
        super().__init__(context, clip_model, batch_size)
        self.input_text_key, self.output_text_key = str(input_text_key), str(output_text_key)
        self._scores: list[torch.Tensor] = []
        self._zero_img: list[torch.Tensor] = []
        self._zero_txt: list[torch.Tensor] = []

    def update(self, batch: ImageBatch) -> None:
        input_emb, edited_emb = self.image_pair(batch)
        before = captions(batch, self.input_text_key, "input_text_key", self.name)
        after = captions(batch, self.output_text_key, "output_text_key", self.name)
        sim, zero_img, zero_txt = directional_similarity(
            input_emb, edited_emb, self.cache.text_embeddings(before), self.cache.text_embeddings(after))
        self._scores.append(sim)
        self._zero_img.append(zero_img)
        self._zero_txt.append(zero_txt)

    def compute(self) -> MetricResult:
        scores = torch.cat(self._scores) if self._scores else torch.empty(0, dtype=torch.float64)
        zero_img = torch.cat(self._zero_img) if self._zero_img else torch.empty(0, dtype=torch.bool)
        zero_txt = torch.cat(self._zero_txt) if self._zero_txt else torch.empty(0, dtype=torch.bool)
        n_img, n_txt = int(zero_img.sum()), int(zero_txt.sum())
        if n_img or n_txt:
            log.warning("clip_directional: %d of %d edits have a zero image direction (edited image identical to "
                        "its input) and %d a zero text direction (identical captions); they score 0.0 by "
                        "definition and are flagged in per_image.csv", n_img, len(scores), n_txt)
        flags = ["+".join(name for name, on in (("image", bool(i)), ("text", bool(t))) if on)
                 for i, t in zip(zero_img.tolist(), zero_txt.tolist())]
        return MetricResult(
            values={"clip_directional": float(scores.mean()) if len(scores) else float("nan")},
            per_image={"clip_directional": scores.tolist(), "clip_directional_zero_direction": flags},
            info={**self.base_info(), "clip_directional_n": len(scores),
                  "clip_directional_zero_image_direction": n_img, "clip_directional_zero_text_direction": n_txt,
                  "clip_directional_zero_direction_result": 0.0, "clip_directional_zero_tol": ZERO_DIRECTION_TOL,
                  "clip_directional_texts": [self.input_text_key, self.output_text_key],
                  "clip_directional_truncated_texts": self.cache.truncated_texts},
        )

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "input_text_key": self.input_text_key, "output_text_key": self.output_text_key}
