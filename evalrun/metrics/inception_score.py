"""Inception Score (Salimans et al. 2016) of the generated images; needs no reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult
from evalrun.metrics.functional.inception_score import inception_score_splits, split_permutation
from evalrun.metrics.inception import InceptionExtractor


class InceptionScore(Metric):
    """Mean and std (ddof=0) over ``splits`` of exp(E KL(p(y|x) || p(y))) on the 1008-way
    logits (torch-fidelity's ``logits_unbiased``). Images are shuffled with ``seed``
    (default: the run's seed) unless ``shuffle`` is false; split i is [i*N//k, (i+1)*N//k)."""

    name = "inception_score"
    higher_is_better = True
    kind = "set"

    def __init__(self, context: MetricContext | None = None, feature_extractor_weights_path: str | None = None,
                 splits: int = 10, shuffle: bool = True, seed: int | None = None, batch_size: int = 50) -> None:
        super().__init__(context)
        if int(splits) < 1:
            raise ConfigError(f"inception_score splits must be >= 1, got {splits}")
        self.splits, self.shuffle = int(splits), bool(shuffle)
        self.seed = int(seed) if seed is not None else int(self.context.seed)
        self.extractor = InceptionExtractor(feature_extractor_weights_path, self.context.device, batch_size,
                                            key=f"metrics.{self.name}.feature_extractor_weights_path")
        self._logits: list[np.ndarray] = []

    def update(self, batch: ImageBatch) -> None:
        self._logits.append(self.extractor.features(batch.images)["logits_unbiased"])

    def compute(self) -> MetricResult:
        logits = np.concatenate(self._logits) if self._logits else np.zeros((0, 1008), np.float32)
        if len(logits) < self.splits:
            raise EvalrunError(f"inception_score with splits={self.splits} needs at least that many images, got "
                               f"{len(logits)}: set metrics.inception_score.splits lower")
        perm = split_permutation(len(logits), self.seed) if self.shuffle else None
        scores = inception_score_splits(logits, self.splits, perm)
        info = {**self.extractor.info(), "is_n_generated": len(logits), "is_splits": self.splits,
                "is_shuffle": self.shuffle, "is_seed": self.seed if self.shuffle else None,
                "is_split_rule": "[i*N//splits, (i+1)*N//splits) after numpy RandomState(seed).permutation",
                "is_logits": "logits_unbiased (fc without bias), softmax in float64", "is_std_ddof": 0}
        return MetricResult(values={"is_mean": float(scores.mean()), "is_std": float(scores.std())}, info=info)

    def settings(self) -> dict[str, Any]:
        return {"weights_sha256": self.extractor.sha256[:16], "splits": self.splits,
                "seed": self.seed if self.shuffle else None}
