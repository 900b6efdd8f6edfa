"""Inception Score (Salimans et al. 2016) of the generated images; needs no reference."""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.settings import setting_bool, setting_int, setting_seed
from evalrun.metrics.common import ExtractorMetric


class InceptionScore(ExtractorMetric):
    """Mean and std (ddof=0) over ``splits`` of exp(E KL(p(y|x) || p(y))) on the 1008-way
    logits (torch-fidelity's ``logits_unbiased``). Images are shuffled with ``seed``
    (default: the run's seed) unless ``shuffle`` is false; split i is [i*N//k, (i+1)*N//k).

    ``split_size`` (null by default) switches to the ADM evaluator's rule instead: consecutive
    splits of that many images (5000 there), the last one shorter; ``splits`` is then unused.
    The ADM protocol sets ``split_size=5000, shuffle=true``: at N=50,000 both rules give the
    same ten splits, at other N only this one is the evaluator's. The shuffle stands for the random
    class order of the published sample batches: a run samples class by class, and consecutive
    splits of it hold 100 classes each, which caps IS at 100."""

    name = "inception_score"
    outputs = (Output("is_mean", "higher", fmt=".2f", label="IS"),
               Output("is_std", kind="spread", of="is_mean", fmt=".2f", label="IS std over splits"))
    seed_settings = ("seed",)

    def __init__(self, context: MetricContext | None = None, feature_extractor_weights_path: str | None = None,
                 feature_extractor_weights_sha256: str = "official", splits: int = 10, shuffle: bool = True,
                 seed: int | None = None, batch_size: int = 50, split_size: int | None = None) -> None:
        super().__init__(context, "inception", {"path": feature_extractor_weights_path, "batch_size": batch_size,
                                                "weights_sha256": feature_extractor_weights_sha256,
                                                "key": f"metrics.{self.name}.feature_extractor_weights_path"},
                         layer="logits_unbiased")
        setting_int(self.name, "splits", splits, 1)
        if split_size is not None and (isinstance(split_size, bool) or not isinstance(split_size, int) or split_size < 1):
            raise ConfigError(f"metrics.inception_score.split_size must be null or an integer >= 1, got {split_size!r}")
        self.splits, self.shuffle = int(splits), setting_bool(self.name, "shuffle", shuffle)
        self.split_size = None if split_size is None else int(split_size)
        self.seed = setting_seed(self.name, "seed", seed, self.context.seed)
        self._logits: list = []

    def required_images(self) -> int:
        return 1 if self.split_size else self.splits

    def update(self, batch: ImageBatch) -> None:
        self._logits.append(self.features(batch))

    def compute(self) -> MetricResult:
        import numpy as np

        from evalrun.metrics.functional.inception_score import (inception_score_chunks, inception_score_splits,
                                                                split_permutation)

        logits = np.concatenate(self._logits) if self._logits else np.zeros((0, 1008), np.float32)
        if self.split_size:
            return self._compute_chunks(logits, inception_score_chunks, split_permutation)
        if len(logits) < self.splits:
            raise EvalrunError(f"inception_score with splits={self.splits} needs at least that many images, got "
                               f"{len(logits)}: set metrics.inception_score.splits lower")
        perm = split_permutation(len(logits), self.seed) if self.shuffle else None
        scores = inception_score_splits(logits, self.splits, perm)
        info = {**self.extractor_info(), "is_n_generated": len(logits), "is_splits": self.splits,
                "is_shuffle": self.shuffle, "is_seed": self.seed if self.shuffle else None,
                "is_split_rule": "[i*N//splits, (i+1)*N//splits) after numpy RandomState(seed).permutation",
                "is_logits": "logits_unbiased (fc without bias), softmax in float64", "is_std_ddof": 0}
        return MetricResult(values={"is_mean": float(scores.mean()), "is_std": float(scores.std())}, info=info)

    def _compute_chunks(self, logits, chunks, permutation) -> MetricResult:
        if len(logits) < 1:
            raise EvalrunError("inception_score needs at least one image")
        scores = chunks(logits, self.split_size, permutation(len(logits), self.seed) if self.shuffle else None)
        info = {**self.extractor_info(), "is_n_generated": len(logits), "is_split_size": self.split_size,
                "is_splits": len(scores), "is_shuffle": self.shuffle, "is_seed": self.seed if self.shuffle else None,
                "is_split_rule": "consecutive splits of split_size images, last one shorter (ADM evaluator's "
                                 "compute_inception_score)" + (" after numpy RandomState(seed).permutation" if self.shuffle else ""),
                "is_logits": "logits_unbiased (fc without bias: the evaluator's softmax/logits/MatMul), softmax in float64",
                "is_std_ddof": 0}
        return MetricResult(values={"is_mean": float(scores.mean()), "is_std": float(scores.std())}, info=info)

    def settings(self) -> dict[str, Any]:
        out = {"weights_sha256": self.extractor_settings()["weights_sha256"], "splits": self.splits,
               "seed": self.seed if self.shuffle else None}
        if self.split_size:  # only when set: runs without it keep their columns
            out.update(splits=None, split_size=self.split_size)
        return out
