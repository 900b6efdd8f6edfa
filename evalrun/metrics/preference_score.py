"""Per-image preference scores as metrics: PickScore, HPSv2.1 and ImageReward.

The scorers in ``metrics/preference/`` compute each score the way its authors do; this module
makes them metrics. Settings are checked without importing torch; the scorer loads once per
process in ``load`` (before generation: a missing checkpoint fails in seconds with a one-line
error naming the file to download and the key to set); each image is scored against its
record's text (``text_key``, as CLIP score); prompts longer than the scorer's text context are
truncated by its own tokenizer (end token kept) and counted; the checkpoint files' sha256, the
preprocessing and the text length go to ``run.json``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from evalrun.errors import ConfigError
from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult, Output
from evalrun.metrics.common import texts_of

DTYPES = ("float32", "float16", "bfloat16")
_SCORERS: dict[tuple, Any] = {}


def load_scorer_once(name: str, path: str, device: Any, dtype: str, **options: Any):
    """Scorer ``name`` loaded once per process (a sweep's jobs share it); ``*key`` options only name
    config keys in error messages and are left out of the cache key."""
    from evalrun.hashing import path_stamp

    # A local checkpoint file or folder keys by its files' stamps: one re-saved in this process is loaded again.
    key = (name, str(path), path_stamp(path), str(device), dtype,
           tuple(sorted((k, str(v), path_stamp(v)) for k, v in options.items() if not k.endswith("key"))))
    if key not in _SCORERS:
        import torch

        from evalrun.metrics.preference import load_scorer

        _SCORERS[key] = load_scorer(name, str(path), device=device, dtype=getattr(torch, dtype), **options)
    return _SCORERS[key]


def clear_cache() -> None:
    _SCORERS.clear()


def under(resolved: str, base: str, label: str) -> str:
    """``resolved`` shown relative to ``label`` when it lies inside ``base`` (a tiny twin's cache folder):
    result columns name what the user configured, not a machine's cache path."""
    return label + resolved[len(base):] if base and resolved.startswith(base) else resolved


class PreferenceMetric(Metric):
    """One per-image score from a preference scorer; subclasses name the scorer and its settings."""

    scorer_name: ClassVar[str]
    path_setting: ClassVar[str]     # the setting that names the checkpoint ("model" or "checkpoint")
    needs = ("text",)  # unconditional samples have no text to score against

    def __init__(self, context: MetricContext | None, path: str, options: dict[str, Any], batch_size: int,
                 text_key: str, dtype: str) -> None:
        super().__init__(context)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"metrics.{self.name}.batch_size must be a positive integer, got {batch_size!r}")
        if dtype not in DTYPES:
            raise ConfigError(f"metrics.{self.name}.dtype={dtype!r} is not valid; use {', '.join(DTYPES)}")
        if path in (None, "", "???"):
            raise ConfigError(f"metrics.{self.name}.{self.path_setting} is empty; set it to a hub id or a local path")
        self.path, self.options = str(path), options
        self.batch_size, self.text_key, self.dtype = batch_size, str(text_key), dtype
        self.scorer = None
        self._scores: list = []
        self._texts: set[str] = set()

    def load(self) -> None:
        if self.scorer is None:
            self.scorer = load_scorer_once(self.scorer_name, self.path, self.context.device, self.dtype,
                                           key=f"metrics.{self.name}.{self.path_setting}", **self.options)

    def update(self, batch: ImageBatch) -> None:
        self.load()
        texts = texts_of(batch, self.text_key, self.name)
        self._texts.update(texts)
        self.scorer.batch_size = self.batch_size  # a cached scorer serves jobs with other batch sizes
        self._scores.append(self.scorer.score(batch.images, texts))

    def compute(self) -> MetricResult:
        import torch

        self.load()
        column = self.outputs[0].column
        scores = torch.cat(self._scores) if self._scores else torch.empty(0, dtype=torch.float64)
        truncated = self.scorer.count_truncated(sorted(self._texts)) if self._texts else 0
        info = {**self.scorer.info(),
                f"{self.name}_text": self.text_key, f"{self.name}_distinct_texts": len(self._texts),
                f"{self.name}_truncated_texts": int(truncated), f"{self.name}_n": len(scores),
                f"{self.name}_batch_size": self.batch_size, f"{self.name}_device": str(self.scorer.device)}
        return MetricResult(values={column: float(scores.mean()) if len(scores) else float("nan")},
                            per_image={column: scores.tolist()}, info=info)

    def weights_digest(self) -> str | None:
        """First 16 hex digits of the weights file's sha256 (a hash of the file hashes for sharded weights;
        configs such as med_config.json are in ``run.json``)."""
        if self.scorer is None:
            return None
        from evalrun.hashing import stable_hash

        from evalrun.hashing import WEIGHT_SUFFIXES

        files = {k: v for k, v in self.scorer.info()["weights_sha256"].items() if k.endswith(WEIGHT_SUFFIXES)}
        digest = next(iter(files.values())) if len(files) == 1 else stable_hash(files, length=64) if files else ""
        return digest[:16] or None

    def common_settings(self) -> dict[str, Any]:
        return {self.path_setting: self.path, "weights_sha256": self.weights_digest(), "text_key": self.text_key,
                "dtype": self.dtype}


class PickScoreMetric(PreferenceMetric):
    """PickScore (Kirstain et al. 2023): ``logit_scale.exp() * cos(text, image)`` of the CLIP-H fine-tune,
    as the authors' README computes it (the softmax over images is left out: one score per image)."""

    name = "pick_score"
    scorer_name = "pickscore"
    path_setting = "model"
    outputs = (Output("pick_score", "higher", fmt=".3f", label="PickScore", per_image=True),)

    def __init__(self, context: MetricContext | None = None, model: str = "yuvalkirstain/PickScore_v1",
                 processor: str | None = None, batch_size: int = 32, text_key: str = "prompt",
                 dtype: str = "float32") -> None:
        self.processor = None if processor in (None, "") else str(processor)
        super().__init__(context, model, {"processor": self.processor, "processor_key": "metrics.pick_score.processor"},
                         batch_size, text_key, dtype)

    def settings(self) -> dict[str, Any]:
        processor = self.processor
        if processor is None and self.scorer is not None:  # resolved: processor/ in the model folder, or laion's
            processor = under(self.scorer.processor_name, self.scorer.model_source, self.path)
        return {**self.common_settings(), "processor": processor}


class HPSMetric(PreferenceMetric):
    """HPSv2.1 (Wu et al. 2023): cos(image, text) of open_clip ViT-H-14 with the HPS v2.1 checkpoint, with
    HPSv2's own inference transform (longest side to 224, zero padding), as ``hpsv2.score`` computes it."""

    name = "hps"
    scorer_name = "hps"
    path_setting = "checkpoint"
    outputs = (Output("hps", "higher", fmt=".4f", label="HPSv2.1", per_image=True),)

    def __init__(self, context: MetricContext | None = None, checkpoint: str = "xswu/HPSv2",
                 architecture: str | None = None, batch_size: int = 32, text_key: str = "prompt",
                 dtype: str = "float32") -> None:
        self.architecture = None if architecture in (None, "") else str(architecture)
        super().__init__(context, checkpoint, {"architecture": self.architecture}, batch_size, text_key, dtype)

    def settings(self) -> dict[str, Any]:
        architecture = self.architecture
        if architecture is None and self.scorer is not None:  # ViT-H-14, or an open_clip_config.json beside the file
            architecture = self.scorer.architecture
            if architecture.startswith("local-dir:"):
                architecture = "open_clip_config.json beside the checkpoint"
        return {**self.common_settings(), "architecture": architecture}


class ImageRewardMetric(PreferenceMetric):
    """ImageReward (Xu et al. 2023): BLIP's text encoder with cross-attention to the image, an MLP head,
    standardised with the authors' mean and std, as ``ImageReward.score`` computes it."""

    name = "image_reward"
    scorer_name = "image_reward"
    path_setting = "checkpoint"
    outputs = (Output("image_reward", "higher", fmt=".3f", label="ImageReward", per_image=True),)

    def __init__(self, context: MetricContext | None = None, checkpoint: str = "THUDM/ImageReward",
                 tokenizer: str | None = None, batch_size: int = 16, text_key: str = "prompt",
                 dtype: str = "float32") -> None:
        self.tokenizer = None if tokenizer in (None, "") else str(tokenizer)
        super().__init__(context, checkpoint, {"tokenizer": self.tokenizer,
                                               "tokenizer_key": "metrics.image_reward.tokenizer"},
                         batch_size, text_key, dtype)

    def settings(self) -> dict[str, Any]:
        tokenizer = self.tokenizer
        if tokenizer is None and self.scorer is not None:  # tokenizer/ beside the checkpoint, or bert-base-uncased
            folder = str(self.scorer.files["weights"].parent)
            tokenizer = under(self.scorer.tokenizer_name, folder, self.path)
        return {**self.common_settings(), "tokenizer": tokenizer}
