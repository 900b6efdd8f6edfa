"""FID-infinity (Chong & Forsyth, CVPR 2020): FID extrapolated to infinitely many samples.

FID is biased upwards by about slope / N; FID_N is computed on subsets of the generated images
at ``num_points`` sizes from ``min_n`` to N (Chong & Forsyth's ``linspace``, subsets drawn by
compounding shuffles from ``seed``), a least-squares line is fitted against 1/N, and its
intercept is ``fid_inf``. Columns: ``fid_inf`` (the intercept), ``fid_inf_slope`` and
``fid_inf_r2`` (the fit's quality: near 1 when FID_N really is linear in 1/N over the sizes
used). Every (N, FID_N) pair is in ``run.json`` (``fid_inf_points``). The paper's defaults are
``min_n=5000``, 15 points, N=50,000; a run needs more than ``min_n`` images. Reference
statistics are the run's reference, exactly as ``fid`` uses them (the subsets are generated
images only). Cost: ``num_points`` FIDs at D x D (about 4 s each at D=2048 on a CPU).
"""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.backbone import backbone, describe
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.settings import setting_seed
from evalrun.metrics.common import ExtractorMetric


class FIDInfinity(ExtractorMetric):
    name = "fid_inf"
    outputs = (Output("fid_inf", "lower", fmt=".2f", label="FID∞"),
               Output("fid_inf_slope", kind="diagnostic", of="fid_inf", fmt=".4g", label="slope of FID vs 1/N"),
               Output("fid_inf_r2", kind="diagnostic", of="fid_inf", fmt=".4f", label="R² of the FID vs 1/N fit"))
    needs_reference = True
    seed_settings = ("seed",)

    def __init__(self, context: MetricContext | None = None, feature_extractor: Any = "inception",
                 feature_extractor_path: str | None = None, feature_extractor_weights_sha256: str = "official",
                 feature_extractor_options: dict | None = None, min_n: int = 5000, num_points: int = 15,
                 seed: int | None = None, batch_size: int = 50) -> None:
        name, options = backbone(self.name, feature_extractor, feature_extractor_path, feature_extractor_weights_sha256,
                                 batch_size=batch_size, options=feature_extractor_options)
        super().__init__(context, name, options)
        for key, value, low in (("min_n", min_n, 2), ("num_points", num_points, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"metrics.fid_inf.{key} must be an integer >= {low}, got {value!r}")
        self.backbone_name, self.min_n, self.num_points = describe(name, options), int(min_n), int(num_points)
        self.seed = setting_seed(self.name, "seed", seed, self.context.seed)
        self._features: list = []

    def required_images(self) -> int:
        return self.min_n + 1

    def load_reference(self) -> None:
        self._reference = self.reference.stats(self.extractor, self.layer, self.name)

    def update(self, batch: ImageBatch) -> None:
        self._features.append(self.features(batch))

    def compute(self) -> MetricResult:
        import numpy as np

        from evalrun.metrics.functional.fid_infinity import fid_infinity, frechet_to

        gen = np.concatenate(self._features) if self._features else np.zeros((0, 1), np.float32)
        if len(gen) <= self.min_n:
            raise EvalrunError(f"fid_inf needs more than min_n={self.min_n} generated images, got {len(gen)}; "
                               f"lower metrics.fid_inf.min_n")
        ref, ref_info = self._reference
        fit = fid_infinity(gen, frechet_to(ref, self.context.device), self.min_n, self.num_points, self.seed)
        info = {**self.extractor_info(), **ref_info, "fid_inf_n_generated": len(gen),
                "fid_inf_points": [[int(n), float(v)] for n, v in zip(fit.sizes, fit.values)],
                "fid_inf_sizes": "numpy linspace(min_n, N, num_points).astype(int32), as Chong & Forsyth's code",
                "fid_inf_subsets": "first N rows after numpy RandomState(seed) shuffles, compounding from size to size",
                "fid_inf_fit": "ordinary least squares FID_N = fid_inf + slope / N", "fid_inf_seed": self.seed}
        return MetricResult(values={"fid_inf": fit.value, "fid_inf_slope": fit.slope, "fid_inf_r2": fit.r2}, info=info)

    def settings(self) -> dict[str, Any]:
        return {**self.reference_settings(), **self.extractor_settings(),
                "feature_extractor": self.backbone_name, "min_n": self.min_n, "num_points": self.num_points,
                "seed": self.seed}
