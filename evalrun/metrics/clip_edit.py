"""CLIP metrics of image edits: directional similarity (Gal et al. 2021; the diffusers guide's
definition) and how much of the input an edit preserves.

Both need, per edit, four embeddings (input image, edited image, input caption, output
caption). They read them through the run's feature store, which embeds each input image,
edited image and caption once per run by content, however many seeds share an input or how
many edit metrics run; identical pixels give identical embeddings, so an edit that changed
nothing has an exactly zero direction.
"""

from __future__ import annotations

import logging
from typing import Any

from evalrun.errors import EvalrunError
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.common import ExtractorMetric

log = logging.getLogger(__name__)


def input_images(batch: ImageBatch, metric: str) -> list:
    """The ``input_image`` of each record (uint8 (3, H, W)), with an error that says what is missing."""
    import torch

    out = []
    for record in batch.records:
        image = record.get("input_image")
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3:
            raise EvalrunError(f"{metric} scores image edits: each record needs 'input_image' (uint8 (3, H, W) "
                               f"tensor), got {type(image).__name__}; use an edit model (model.task=edit) with an "
                               f"edit prompt set (prompts=instructpix2pix_demo or prompts=edit_demo)")
        out.append(image)
    return out


def captions(batch: ImageBatch, key: str, setting: str, metric: str) -> list[str]:
    """The caption ``key`` of each record; ``setting`` names the metric option that chose it."""
    missing = [i for i, r in enumerate(batch.records) if r.get(key) is None]
    if missing:
        raise EvalrunError(f"{metric}: {len(missing)} record(s) have no {key!r} caption; use an edit prompt set "
                           f"with input and output captions, or set metrics.{metric}.{setting}")
    return [str(r[key]) for r in batch.records]


class EditCLIPMetric(ExtractorMetric):
    """Shared set-up of the CLIP editing metrics: the CLIP model and the (input, edited) embeddings."""

    needs = ("text", "input_image")  # each record's input image and captions (existing pairs too)

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-large-patch14",
                 batch_size: int = 64) -> None:
        super().__init__(context, "clip", {"path": str(clip_model), "batch_size": batch_size,
                                           "key": f"metrics.{self.name}.clip_model"})
        self.clip_model = str(clip_model)
        self.identical = 0  # edited images pixel-identical to their input

    def image_pair(self, batch: ImageBatch):
        """(input, edited) image embeddings of a batch; counts edits that changed nothing."""
        import torch

        store = self.store()
        inputs = input_images(batch, self.name)
        edited = list(batch.images)
        self.identical += sum(a.shape == b.shape and torch.equal(a, b) for a, b in zip(inputs, edited))
        return store.unique_images(self.extractor, inputs), store.unique_images(self.extractor, edited)

    def base_info(self) -> dict[str, Any]:
        return {**self.extractor_info(), f"{self.name}_identical_to_input": self.identical,
                "embeddings": "L2-normalised projected CLIP embeddings (image: CLIP's own processor on the "
                              "saved uint8 pixels; text: tokenizer truncation keeping the end token)"}

    def settings(self) -> dict[str, Any]:
        return {"clip_model": self.clip_model, "weights_sha256": self.extractor_settings()["weights_sha256"]}


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
    outputs = (Output("clip_directional", "higher", fmt=".4f", label="CLIP directional similarity", per_image=True),)

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-large-patch14",
                 batch_size: int = 64, input_text_key: str = "input_caption",
                 output_text_key: str = "output_caption") -> None:
        super().__init__(context, clip_model, batch_size)
        self.input_text_key, self.output_text_key = str(input_text_key), str(output_text_key)
        self._scores: list = []
        self._zero_img: list = []
        self._zero_txt: list = []
        self._texts: set[str] = set()

    def update(self, batch: ImageBatch) -> None:
        from evalrun.metrics.functional.edit import directional_similarity

        input_emb, edited_emb = self.image_pair(batch)
        before = captions(batch, self.input_text_key, "input_text_key", self.name)
        after = captions(batch, self.output_text_key, "output_text_key", self.name)
        self._texts.update(before + after)
        store = self.store()
        sim, zero_img, zero_txt = directional_similarity(
            input_emb, edited_emb, store.texts(self.extractor, before), store.texts(self.extractor, after))
        self._scores.append(sim)
        self._zero_img.append(zero_img)
        self._zero_txt.append(zero_txt)

    def compute(self) -> MetricResult:
        import torch

        from evalrun.metrics.functional.edit import ZERO_DIRECTION_TOL

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
        truncated = self.extractor.count_truncated(sorted(self._texts)) if self._texts else []
        return MetricResult(
            values={"clip_directional": float(scores.mean()) if len(scores) else float("nan")},
            per_image={"clip_directional": scores.tolist(), "clip_directional_zero_direction": flags},
            info={**self.base_info(), "clip_directional_n": len(scores),
                  "clip_directional_zero_image_direction": n_img, "clip_directional_zero_text_direction": n_txt,
                  "clip_directional_zero_direction_result": 0.0, "clip_directional_zero_tol": ZERO_DIRECTION_TOL,
                  "clip_directional_texts": [self.input_text_key, self.output_text_key],
                  "clip_directional_truncated_texts": sum(truncated)},
        )

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "input_text_key": self.input_text_key, "output_text_key": self.output_text_key}


class CLIPImageSimilarity(EditCLIPMetric):
    """Mean over edits of cos(E_img(input), E_img(edited)), the guide's extension of the
    directional metric. Higher means more of the input survived (1.0: the edit changed
    nothing CLIP sees); read it next to ``clip_directional``, since an edit that does
    nothing preserves everything."""

    name = "clip_image_similarity"
    outputs = (Output("clip_image_similarity", "higher", fmt=".4f", label="CLIP image similarity", per_image=True),)

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-large-patch14",
                 batch_size: int = 64) -> None:
        super().__init__(context, clip_model, batch_size)
        self._scores: list = []

    def update(self, batch: ImageBatch) -> None:
        from evalrun.metrics.functional.edit import image_similarity

        self._scores.append(image_similarity(*self.image_pair(batch)))

    def compute(self) -> MetricResult:
        import torch

        scores = torch.cat(self._scores) if self._scores else torch.empty(0, dtype=torch.float64)
        return MetricResult(
            values={"clip_image_similarity": float(scores.mean()) if len(scores) else float("nan")},
            per_image={"clip_image_similarity": scores.tolist()},
            info={**self.base_info(), "clip_image_similarity_n": len(scores)},
        )
