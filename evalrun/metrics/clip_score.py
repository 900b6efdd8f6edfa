"""CLIP score of each generated image against its prompt (Hessel et al. 2021; torchmetrics' scale)."""

from __future__ import annotations

from typing import Any

import torch

from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult
from evalrun.metrics.clip_models import count_truncated, encode_images, load_clip
from evalrun.metrics.edit_embeddings import shared_embeddings
from evalrun.metrics.functional.clip import clip_score


class CLIPScore(Metric):
    """Mean over images of ``scale * max(cos(image, text), 0)``.

    ``text_key`` picks which record field is the text: ``prompt`` for text-to-image,
    ``output_caption`` for edits. Prompts over the CLIP context are truncated keeping the
    end token, and counted in the result (``clip_score_truncated_texts`` in run.json).
    """

    name = "clip_score"
    higher_is_better = True
    tasks = ("text2img", "edit", "class2img")  # unconditional samples have no text to score against

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-base-patch16",
                 scale: float = 100.0, batch_size: int = 64, text_key: str = "prompt") -> None:
        super().__init__(context)
        if scale <= 0:
            raise ValueError(f"clip_score scale must be > 0, got {scale}")
        self.clip_model, self.scale, self.batch_size, self.text_key = clip_model, float(scale), int(batch_size), text_key
        self.bundle = load_clip(clip_model, self.context.device, key="metrics.clip_score.clip_model")
        self._scores: list[torch.Tensor] = []
        self._texts: set[str] = set()
        # Texts go through the run's shared CLIP cache: each distinct prompt (or caption, also
        # used by the edit metrics) is encoded once per run, however many images it has.
        self.cache = shared_embeddings(self.context, self.bundle, self.batch_size)

    def update(self, batch: ImageBatch) -> None:
        texts = [str(r[self.text_key]) for r in batch.records]
        img = encode_images(self.bundle, batch.images, self.batch_size)
        self._texts.update(texts)
        self._scores.append(clip_score(img, self.cache.text_embeddings(texts), self.scale))

    def compute(self) -> MetricResult:
        scores = torch.cat(self._scores) if self._scores else torch.empty(0, dtype=torch.float64)
        return MetricResult(
            values={"clip_score": float(scores.mean()) if len(scores) else float("nan")},
            per_image={"clip_score": scores.tolist()},
            info={**self.bundle.info(), "clip_score_scale": self.scale, "clip_score_text": self.text_key,
                  "clip_score_truncated_texts": sum(count_truncated(self.bundle, sorted(self._texts))),
                  "clip_score_n": len(scores)},
        )

    def settings(self) -> dict[str, Any]:
        return {"clip_model": self.clip_model, "scale": self.scale, "text_key": self.text_key}
