"""FID (Heusel et al. 2017) of the generated images against the run's reference."""

from __future__ import annotations

import warnings
from typing import Any

from evalrun.errors import EvalrunError
from evalrun.metrics.base import ImageBatch, Metric, MetricContext, MetricResult
from evalrun.metrics.functional.fid import StatsAccumulator, frechet_distance_info
from evalrun.metrics.inception import InceptionExtractor
from evalrun.reference import ReferenceSpec, reference_stats

FEATURE_DIM = 2048


class FID(Metric):
    """Frechet distance between Gaussians fitted to Inception pool3 features.

    Generated features are reduced to float64 sums as they arrive; the reference statistics
    come from the reference cache (computed once per reference and extractor) or an .npz.
    With fewer images than feature dimensions (2048) the covariance is singular and FID is
    biased upwards: it still computes, warns, and N is always reported.
    """

    name = "fid"
    higher_is_better = False
    kind = "set"

    def __init__(self, context: MetricContext | None = None, feature_extractor_weights_path: str | None = None,
                 batch_size: int = 50) -> None:
        super().__init__(context)
        self.reference = ReferenceSpec.from_config(self.context.reference, self.name)
        self._reference = None
        self.extractor = InceptionExtractor(feature_extractor_weights_path, self.context.device, batch_size,
                                            key=f"metrics.{self.name}.feature_extractor_weights_path")
        self._stats = StatsAccumulator()
        self._sizes: set[str] = set()

    def prepare(self):
        """Reference statistics, computed (or read from the cache) once, before generation."""
        if self._reference is None:
            self._reference = reference_stats(self.reference, self.extractor.cache_id("2048"), self.extractor.pool_features,
                                              self.context.cache_dir, self.extractor.batch_size)
            dim = self._reference[0].mu.shape[0]
            if dim != FEATURE_DIM:  # e.g. an .npz of 768-d or 64-d features
                raise EvalrunError(f"reference statistics {self.reference.describe()} have {dim} features, but fid uses "
                                   f"Inception pool3 ({FEATURE_DIM}); give reference.path statistics of pool3 features")
        return self._reference

    def update(self, batch: ImageBatch) -> None:
        self._stats.add(self.extractor.features(batch.images)["2048"])
        self._sizes.add(f"{batch.images.shape[2]}x{batch.images.shape[3]}")

    def compute(self) -> MetricResult:
        if self._stats.n < 2:
            raise EvalrunError(f"fid needs at least 2 generated images, got {self._stats.n}")
        gen = self._stats.stats()
        ref, ref_info = self.prepare()
        info: dict[str, Any] = {**self.extractor.info(), **ref_info, "fid_n_generated": gen.n,
                                "fid_generated_sizes": sorted(self._sizes), "fid_stats_dtype": "float64"}
        if ref_info.get("reference_extractor_matches") is False:
            info["fid_warning_reference"] = ("the .npz was written by evalrun with a different feature extractor "
                                             "(see reference_npz_meta): scores are not comparable")
            warnings.warn(info["fid_warning_reference"], stacklevel=2)
        small = [f"{what} N={n}" for what, n in (("generated", gen.n), ("reference", ref.n)) if n is not None and n < FEATURE_DIM]
        if small:
            info["fid_warning"] = (f"{', '.join(small)} < {FEATURE_DIM} feature dimensions: the covariance is singular "
                                   f"and FID is biased upwards; compare FIDs only at equal N")
            warnings.warn(info["fid_warning"], stacklevel=2)
        value, info["fid_trace_sqrt"] = frechet_distance_info(gen, ref, device=self.context.device)
        return MetricResult(values={"fid": value}, info=info)

    def settings(self) -> dict[str, Any]:
        return {"reference": self.reference.describe(), "weights_sha256": self.extractor.sha256[:16]}
