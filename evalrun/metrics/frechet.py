"""What FID, FD on any backbone, FD_DINOv2 and sFID share: the Frechet distance between Gaussians fitted
to one feature layer of the generated images and of the run's reference.

Generated features are reduced to float64 sums as they arrive (the features themselves are kept
only when a bootstrap interval is asked for); the reference statistics come from the reference
cache (computed once per reference and backbone), an .npz, or an ADM batch's stored statistics.
With fewer images than feature dimensions the covariance is singular and the distance is
biased upwards: it still computes, warns, and N is always reported.
"""

from __future__ import annotations

import warnings
from typing import Any

from evalrun.errors import EvalrunError
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult
from evalrun.metrics.common import ExtractorMetric


class FrechetMetric(ExtractorMetric):
    """Base class: subclasses set ``name``, ``outputs`` (the distance, then its two bootstrap bounds)."""

    needs_reference = True
    min_images = 2
    seed_settings = ("bootstrap_seed",)

    def __init__(self, context: MetricContext | None, feature_extractor: str, options: dict[str, Any],
                 layer: str | None = None, bootstrap: int = 0, bootstrap_seed: int | None = None,
                 bootstrap_reference: bool = True) -> None:
        super().__init__(context, feature_extractor, options, layer)
        from evalrun.metrics.bootstrap_ci import Bootstrap

        self.bootstrap = Bootstrap(self.name, bootstrap, bootstrap_seed, bootstrap_reference, self.context.seed)
        self._stats = None                 # float64 sums (functional.fid.StatsAccumulator), from the first batch
        self._sizes: set[str] = set()
        self._features: list = []          # only with the bootstrap on
        self._reference = None
        self._reference_features = None

    def load_reference(self) -> None:
        self._reference = self.reference.stats(self.extractor, self.layer, self.name)
        dim, want = self._reference[0].mu.shape[0], self.extractor.layers[self.layer]
        if dim != want:  # e.g. an .npz of 768-d or 64-d features
            raise EvalrunError(f"reference statistics {self.reference_spec.describe()} have {dim} features, but {self.name} "
                               f"uses {self.extractor_name} {self.layer} ({want}); give reference.path statistics of "
                               f"those features")
        if self.bootstrap.enabled and self.bootstrap.reference and self._reference_is_images():
            self._reference_features = self.reference.features(self.extractor, self.layer, self.name)[0]

    def _reference_is_images(self) -> bool:
        """Whether the reference statistics were computed from reference images (then they can be resampled)."""
        info = self._reference[1]
        return self.reference_spec.kind in ("folder", "dataset") or \
            str(info.get("reference_stats_source", "")).startswith("arr_0")

    def update(self, batch: ImageBatch) -> None:
        feats = self.features(batch)
        if self._stats is None:            # created here, not in __init__: validating a config imports no torch
            from evalrun.metrics.functional.fid import StatsAccumulator

            self._stats = StatsAccumulator()
        self._stats.add(feats)
        self._sizes.add(f"{batch.images.shape[2]}x{batch.images.shape[3]}")
        if self.bootstrap.enabled:
            self._features.append(feats)

    def compute(self) -> MetricResult:
        from evalrun.metrics.functional.fid import frechet_distance_info

        n = 0 if self._stats is None else self._stats.n
        if n < 2:
            raise EvalrunError(f"{self.name} needs at least 2 generated images, got {n}")
        gen = self._stats.stats()
        ref, ref_info = self._reference
        dim = self.extractor.layers[self.layer]
        info: dict[str, Any] = {**self.extractor_info(), **ref_info, f"{self.name}_n_generated": gen.n,
                                f"{self.name}_generated_sizes": sorted(self._sizes), f"{self.name}_stats_dtype": "float64"}
        if ref_info.get("reference_extractor_matches") is False:
            info[f"{self.name}_warning_reference"] = ("the .npz was written by evalrun with a different feature extractor "
                                                      "(see reference_npz_meta): scores are not comparable")
            warnings.warn(info[f"{self.name}_warning_reference"], stacklevel=2)
        small = [f"{what} N={n}" for what, n in (("generated", gen.n), ("reference", ref.n)) if n is not None and n < dim]
        if small:
            info[f"{self.name}_warning"] = (f"{', '.join(small)} < {dim} feature dimensions: the covariance is singular "
                                            f"and the distance is biased upwards; compare only at equal N")
            warnings.warn(info[f"{self.name}_warning"], stacklevel=2)
        value, info[f"{self.name}_trace_sqrt"] = frechet_distance_info(gen, ref, device=self.context.device)
        values = {self.outputs[0].column: value}
        if self.bootstrap.enabled:
            values.update(self._bootstrap(ref))
            info.update(self.bootstrap.info(gen.n, None if self._reference_features is None
                                            else len(self._reference_features)))
        return MetricResult(values=values, info=info)

    def _bootstrap(self, ref_stats) -> dict[str, float]:
        """Percentile interval over resamples (functional.bootstrap.bootstrap_fid: weighted statistics,
        no resample is materialised)."""
        import numpy as np

        from evalrun.metrics.functional.bootstrap import bootstrap_fid

        gen = np.concatenate(self._features)
        resample_ref = self._reference_features is not None
        self.bootstrap.reference_applied = resample_ref
        found = bootstrap_fid(gen, self._reference_features if resample_ref else ref_stats,
                              resample_reference=resample_ref, n_resamples=self.bootstrap.resamples,
                              seed=self.bootstrap.seed, device=self.context.device)
        return self.bootstrap.intervals({self.outputs[0].column: found.values})

    def settings(self) -> dict[str, Any]:
        return {**self.reference_settings(), **self.extractor_settings(), **self.bootstrap.settings()}
