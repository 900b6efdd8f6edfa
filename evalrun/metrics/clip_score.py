"""CLIP score of each generated image against its prompt (Hessel et al. 2021; torchmetrics' scale)."""

from __future__ import annotations

from typing import Any

from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.settings import setting_number
from evalrun.metrics.common import ExtractorMetric, texts_of


class CLIPScore(ExtractorMetric):
    """Mean over images of ``scale * max(cos(image, text), 0)``.

    ``text_key`` picks which record field is the text: ``prompt`` for text-to-image,
    ``output_caption`` for edits, ``auto`` (images made elsewhere) an edit pair's output caption and
    any other image's prompt. Prompts over the CLIP context are truncated keeping the
    end token, and counted in the result (``clip_score_truncated_texts`` in run.json).
    Each distinct text is encoded once per run, shared with the edit metrics.
    """

    name = "clip_score"
    outputs = (Output("clip_score", "higher", fmt=".2f", label="CLIP score", per_image=True),)
    needs = ("text",)  # unconditional samples have no text to score against

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-base-patch16",
                 scale: float = 100.0, batch_size: int = 64, text_key: str = "prompt") -> None:
        scale = setting_number(self.name, "scale", scale, positive=True)
        super().__init__(context, "clip", {"path": str(clip_model), "batch_size": batch_size,
                                           "key": f"metrics.{self.name}.clip_model"})
        self.clip_model, self.scale, self.text_key = str(clip_model), float(scale), str(text_key)
        self._scores: list = []
        self._texts: set[str] = set()

    def update(self, batch: ImageBatch) -> None:
        import torch

        from evalrun.metrics.functional.clip import clip_score

        texts = texts_of(batch, self.text_key, "clip_score")
        self._texts.update(texts)
        images = torch.from_numpy(self.features(batch))
        self._scores.append(clip_score(images, self.store().texts(self.extractor, texts), self.scale))

    def compute(self) -> MetricResult:
        import torch

        scores = torch.cat(self._scores) if self._scores else torch.empty(0, dtype=torch.float64)
        truncated = self.extractor.count_truncated(sorted(self._texts)) if self._texts else []
        return MetricResult(
            values={"clip_score": float(scores.mean()) if len(scores) else float("nan")},
            per_image={"clip_score": scores.tolist()},
            info={**self.extractor_info(), "clip_score_scale": self.scale, "clip_score_text": self.text_key,
                  "clip_score_truncated_texts": sum(truncated), "clip_score_n": len(scores)},
        )

    def settings(self) -> dict[str, Any]:
        return {"clip_model": self.clip_model, "weights_sha256": self.extractor_settings()["weights_sha256"],
                "scale": self.scale, "text_key": self.text_key}
