"""FID (Heusel et al. 2017): Frechet distance of the generated images to the run's reference."""

from __future__ import annotations

import warnings
from typing import Any

from evalrun.errors import EvalrunError
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.common import ExtractorMetric


class FID(ExtractorMetric):
    """Frechet distance between Gaussians fitted to features (Inception pool3 by default).

    Generated features are reduced to float64 sums as they arrive; the reference statistics
    come from the reference cache (computed once per reference and extractor) or an .npz.
    With fewer images than feature dimensions (2048) the covariance is singular and FID is
    biased upwards: it still computes, warns, and N is always reported.
    """

    name = "fid"
    outputs = (Output("fid", "lower", fmt=".2f", label="FID"),)
    needs_reference = True
    min_images = 2

    def __init__(self, context: MetricContext | None = None, feature_extractor: str = "inception",
                 feature_extractor_weights_path: str | None = None, feature_extractor_weights_sha256: str = "official",
                 batch_size: int = 50) -> None:
        options = {"path": feature_extractor_weights_path, "batch_size": batch_size, "key": f"metrics.{self.name}.feature_extractor_weights_path"}
        if feature_extractor == "inception":
            options["weights_sha256"] = feature_extractor_weights_sha256
        super().__init__(context, feature_extractor, options)
        from evalrun.metrics.functional.fid import StatsAccumulator

        self._stats = StatsAccumulator()
        self._sizes: set[str] = set()
        self._reference = None

    def load_reference(self) -> None:
        self._reference = self.reference.stats(self.extractor, self.layer, self.name)
        dim, want = self._reference[0].mu.shape[0], self.extractor.layers[self.layer]
        if dim != want:  # e.g. an .npz of 768-d or 64-d features
            raise EvalrunError(f"reference statistics {self.reference_spec.describe()} have {dim} features, but {self.name} "
                               f"uses {self.extractor_name} {self.layer} ({want}); give reference.path statistics of "
                               f"those features")

    def update(self, batch: ImageBatch) -> None:
        self._stats.add(self.features(batch))
        self._sizes.add(f"{batch.images.shape[2]}x{batch.images.shape[3]}")

    def compute(self) -> MetricResult:
        from evalrun.metrics.functional.fid import frechet_distance_info

        if self._stats.n < 2:
            raise EvalrunError(f"{self.name} needs at least 2 generated images, got {self._stats.n}")
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
        return MetricResult(values={self.outputs[0].column: value}, info=info)

    def settings(self) -> dict[str, Any]:
        return {**self.reference_settings(), **self.extractor_settings()}
