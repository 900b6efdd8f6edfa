"""KID (Binkowski et al. 2018) of the generated images against the run's reference images."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult
from evalrun.metrics.functional.kid import kid_subsets, subset_indices
from evalrun.metrics.inception import InceptionExtractor
from evalrun.reference import ReferenceSpec, reference_features


class KID(Metric):
    """Unbiased polynomial-kernel MMD^2 on Inception pool3 features, mean and std (ddof=0)
    over ``subsets`` seeded subsets of ``subset_size``.

    ``subset_size`` larger than either set is clamped to the smaller N, with a warning and
    both sizes recorded: the estimator is unbiased at any subset size, only its spread
    changes. Subsets are drawn from ``seed`` (default: the run's seed), never the global RNG.
    """

    name = "kid"
    higher_is_better = False
    kind = "set"

    def __init__(self, context: MetricContext | None = None, feature_extractor_weights_path: str | None = None,
                 subsets: int = 100, subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
                 coef: float = 1.0, seed: int | None = None, batch_size: int = 50) -> None:
        super().__init__(context)
        if int(subsets) < 1 or int(subset_size) < 2 or int(degree) < 1:
            raise ConfigError(f"kid needs subsets >= 1, subset_size >= 2, degree >= 1; got {subsets}, {subset_size}, {degree}")
        if gamma is not None and gamma <= 0:
            raise ConfigError(f"kid gamma must be null (1/feature dim) or > 0, got {gamma}")
        self.subsets, self.subset_size, self.degree = int(subsets), int(subset_size), int(degree)
        self.gamma, self.coef = (None if gamma is None else float(gamma)), float(coef)
        self.seed = int(seed) if seed is not None else int(self.context.seed)
        self.reference = ReferenceSpec.from_config(self.context.reference, self.name)
        self._reference = None
        self.extractor = InceptionExtractor(feature_extractor_weights_path, self.context.device, batch_size,
                                            key=f"metrics.{self.name}.feature_extractor_weights_path")
        self._features: list[np.ndarray] = []

    def prepare(self):
        """Reference statistics, computed (or read from the cache) once, before generation."""
        if self._reference is None:
            self._reference = reference_features(self.reference, self.extractor.cache_id("2048"), self.extractor.pool_features,
                                           self.context.cache_dir, self.extractor.batch_size)
        return self._reference

    def update(self, batch: ImageBatch) -> None:
        self._features.append(self.extractor.features(batch.images)["2048"])

    def compute(self) -> MetricResult:
        gen = np.concatenate(self._features) if self._features else np.zeros((0, 2048), np.float32)
        ref, ref_info = self.prepare()
        size = min(self.subset_size, len(gen), len(ref))
        if size < 2:
            raise EvalrunError(f"kid needs at least 2 generated and 2 reference images, got {len(gen)} and {len(ref)}")
        info: dict[str, Any] = {**self.extractor.info(), **ref_info, "kid_n_generated": len(gen),
                                "kid_subsets": self.subsets, "kid_subset_size": size,
                                "kid_subset_size_requested": self.subset_size, "kid_seed": self.seed,
                                "kid_subset_draw": "numpy RandomState(seed).choice, generated then reference (torch-fidelity's)",
                                "kid_kernel": f"(gamma <x,y> + {self.coef})^{self.degree}, gamma={self.gamma or '1/dim'}",
                                "kid_estimator": "unbiased MMD^2, float64", "kid_std_ddof": 0}
        if size < self.subset_size:
            info["kid_warning"] = (f"kid subset_size {self.subset_size} > N (generated {len(gen)}, reference {len(ref)}): "
                                   f"clamped to {size}")
            warnings.warn(info["kid_warning"], stacklevel=2)
        values = kid_subsets(gen, ref, subset_indices(len(gen), len(ref), size, self.subsets, self.seed),
                             self.degree, self.gamma, self.coef)
        return MetricResult(values={"kid_mean": float(values.mean()), "kid_std": float(values.std())}, info=info)

    def settings(self) -> dict[str, Any]:
        return {"reference": self.reference.describe(), "weights_sha256": self.extractor.sha256[:16],
                "subsets": self.subsets, "subset_size": self.subset_size, "seed": self.seed}
