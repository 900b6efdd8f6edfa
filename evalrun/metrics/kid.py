"""KID (Binkowski et al. 2018) of the generated images against the run's reference images."""

from __future__ import annotations

import warnings
from typing import Any

from evalrun.errors import EvalrunError
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.settings import setting_int, setting_number, setting_seed
from evalrun.metrics.common import ExtractorMetric


class KID(ExtractorMetric):
    """Unbiased polynomial-kernel MMD^2 on features (Inception pool3 by default), mean and std
    (ddof=0) over ``subsets`` seeded subsets of ``subset_size``.

    ``subset_size`` larger than either set is clamped to the smaller N, with a warning; the
    result columns carry the size applied (``kid.subset_size``) beside the one requested. The
    estimator is unbiased at any subset size, only its spread changes. Subsets are drawn from
    ``seed`` (default: the run's seed), never the global RNG.
    """

    name = "kid"
    outputs = (Output("kid_mean", "lower", fmt=".4f", label="KID"),
               Output("kid_std", kind="spread", of="kid_mean", fmt=".4f", label="KID std over subsets"))
    seed_settings = ("seed",)
    needs_reference = True
    min_images = 2

    def __init__(self, context: MetricContext | None = None, feature_extractor: str = "inception",
                 feature_extractor_weights_path: str | None = None, feature_extractor_weights_sha256: str = "official",
                 subsets: int = 100, subset_size: int = 1000, degree: int = 3, gamma: float | None = None,
                 coef: float = 1.0, seed: int | None = None, batch_size: int = 50) -> None:
        options = {"path": feature_extractor_weights_path, "batch_size": batch_size, "key": f"metrics.{self.name}.feature_extractor_weights_path"}
        if feature_extractor == "inception":
            options["weights_sha256"] = feature_extractor_weights_sha256
        super().__init__(context, feature_extractor, options)
        self.subsets, self.subset_size, self.degree = (setting_int(self.name, "subsets", subsets, 1),
                                                       setting_int(self.name, "subset_size", subset_size, 2),
                                                       setting_int(self.name, "degree", degree, 1))
        self.gamma = setting_number(self.name, "gamma", gamma, positive=True, null="1 / feature dim")
        self.coef = setting_number(self.name, "coef", coef)
        self.seed = setting_seed(self.name, "seed", seed, self.context.seed)
        self._features: list = []
        self._applied_size: int | None = None

    def load_reference(self) -> None:
        self._reference = self.reference.features(self.extractor, self.layer, self.name)

    def update(self, batch: ImageBatch) -> None:
        self._features.append(self.features(batch))

    def compute(self) -> MetricResult:
        import numpy as np

        from evalrun.metrics.functional.kid import kid_subsets, subset_indices

        dim = self.extractor.layers[self.layer]
        gen = np.concatenate(self._features) if self._features else np.zeros((0, dim), np.float32)
        ref, ref_info = self._reference
        size = min(self.subset_size, len(gen), len(ref))
        if size < 2:
            raise EvalrunError(f"kid needs at least 2 generated and 2 reference images, got {len(gen)} and {len(ref)}")
        self._applied_size = size
        info: dict[str, Any] = {**self.extractor_info(), **ref_info, "kid_n_generated": len(gen),
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
        # The subset size applied (clamped to N) is the column; the requested one goes beside it.
        applied = self._applied_size if self._applied_size is not None else self.subset_size
        # The kernel too: a sweep over degree or gamma must never be averaged as seeds of one configuration.
        return {**self.reference_settings(), **self.extractor_settings(), "subsets": self.subsets,
                "subset_size": applied, "subset_size_requested": self.subset_size, "seed": self.seed,
                "degree": self.degree, "gamma": self.gamma, "coef": self.coef}
