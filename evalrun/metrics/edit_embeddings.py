"""CLIP embeddings encoded once per run and shared between the metrics that use them.

``clip_directional`` and ``clip_image_similarity`` need the same four embeddings per edit
(input image, edited image, input caption, output caption). A run builds all its metrics
with one ``MetricContext``, so an ``EditEmbeddings`` stored on that context is a per-run
cache both metrics read: each input image, edited image and caption is encoded once per
run, however many seeds' images share an input or how many edit metrics run (clip_score
reads its texts from the same cache). Images are
keyed by their pixels (which within a run is the same as keying input images by
``input_path``, and also makes an edited image identical to its input reuse the input's
embedding, giving an exactly zero direction); captions by their text.

The cache lives for one run only, so a run's numbers do not depend on which jobs ran
before it in the same process (re-encoding in another batch layout moves float32
embeddings by ~1e-7).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from evalrun.errors import EvalrunError
from evalrun.metrics.base import ImageBatch, Metric, MetricContext
from evalrun.metrics.clip_models import ClipBundle, count_truncated, encode_images, encode_texts, load_clip


def pixel_key(image: torch.Tensor) -> str:
    """Content key of a uint8 (3, H, W) image."""
    data = image.contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest() + "x".join(map(str, image.shape))


class EditEmbeddings:
    """Embedding cache for one run and one CLIP model (see module docstring)."""

    def __init__(self, bundle: ClipBundle, batch_size: int) -> None:
        self.bundle, self.batch_size = bundle, batch_size
        self.images: dict[str, torch.Tensor] = {}
        self.texts: dict[str, torch.Tensor] = {}
        self.truncated_texts = 0

    def image_embeddings(self, images: list[torch.Tensor]) -> torch.Tensor:
        keys = [pixel_key(img) for img in images]
        new = {k: img for k, img in zip(keys, images) if k not in self.images}
        # Encode new images in batches of one shape (inputs and edits share one size in a run,
        # but the metric should not crash on a hand-built batch that mixes sizes).
        by_shape: dict[tuple, list[str]] = {}
        for k, img in new.items():
            by_shape.setdefault(tuple(img.shape), []).append(k)
        for group in by_shape.values():
            stacked = torch.stack([new[k] for k in group])
            for k, emb in zip(group, encode_images(self.bundle, stacked, self.batch_size)):
                self.images[k] = emb
        return torch.stack([self.images[k] for k in keys])

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(texts) if t not in self.texts]
        if new:
            self.truncated_texts += sum(count_truncated(self.bundle, new))
            for text, emb in zip(new, encode_texts(self.bundle, new, self.batch_size)):
                self.texts[text] = emb
        return torch.stack([self.texts[t] for t in texts])


def shared_embeddings(context: MetricContext, bundle: ClipBundle, batch_size: int) -> EditEmbeddings:
    """The run's cache for ``bundle``: the context object is shared by all metrics of a run."""
    caches = context.__dict__.setdefault("_edit_embeddings", {})
    key = (bundle.name, str(bundle.device), str(bundle.dtype))
    if key not in caches:
        caches[key] = EditEmbeddings(bundle, batch_size)
    return caches[key]


def input_images(batch: ImageBatch, metric: str) -> list[torch.Tensor]:
    """The ``input_image`` of each record (uint8 (3, H, W)), with an error that says what is missing."""
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


class EditCLIPMetric(Metric):
    """Shared set-up of the CLIP editing metrics: the CLIP model, the run's cache, the embeddings."""

    higher_is_better = True
    tasks = ("edit",)  # needs each record's input image and captions

    def __init__(self, context: MetricContext | None = None, clip_model: str = "openai/clip-vit-large-patch14",
                 batch_size: int = 64) -> None:
        super().__init__(context)
        if int(batch_size) < 1:
            raise ValueError(f"{self.name} batch_size must be >= 1, got {batch_size}")
        self.clip_model, self.batch_size = str(clip_model), int(batch_size)
        self.bundle = load_clip(self.clip_model, self.context.device, key=f"metrics.{self.name}.clip_model")
        self.cache = shared_embeddings(self.context, self.bundle, self.batch_size)
        self.identical = 0  # edited images pixel-identical to their input

    def image_pair(self, batch: ImageBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, edited) image embeddings of a batch; counts edits that changed nothing."""
        inputs = input_images(batch, self.name)
        edited = list(batch.images)
        self.identical += sum(a.shape == b.shape and torch.equal(a, b) for a, b in zip(inputs, edited))
        return self.cache.image_embeddings(inputs), self.cache.image_embeddings(edited)

    def base_info(self) -> dict[str, Any]:
        return {**self.bundle.info(), f"{self.name}_identical_to_input": self.identical,
                "embeddings": "L2-normalised projected CLIP embeddings (image: CLIP's own processor on the "
                              "saved uint8 pixels; text: tokenizer truncation keeping the end token)"}

    def settings(self) -> dict[str, Any]:
        return {"clip_model": self.clip_model}
