"""FID (Heusel et al. 2017): Frechet distance of the generated images to the run's reference, on
Inception-v3 pool3 features (frechet.py has the shared code)."""

from __future__ import annotations

from evalrun.metrics.base import MetricContext, Output
from evalrun.metrics.bootstrap_ci import ci_outputs
from evalrun.metrics.frechet import FrechetMetric


class FID(FrechetMetric):
    """Frechet distance between Gaussians fitted to features (Inception pool3 by default; FD on
    other backbones is the ``fd`` metric, whose column says so). ``bootstrap=N`` adds
    ``fid_ci95_low/high`` from N resamples (bootstrap_ci.py)."""

    name = "fid"
    outputs = (Output("fid", "lower", fmt=".2f", label="FID"), *ci_outputs("fid", fmt=".2f"))

    def __init__(self, context: MetricContext | None = None, feature_extractor: str = "inception",
                 feature_extractor_weights_path: str | None = None, feature_extractor_weights_sha256: str = "official",
                 batch_size: int = 50, bootstrap: int = 0, bootstrap_seed: int | None = None,
                 bootstrap_reference: bool = True) -> None:
        options = {"path": feature_extractor_weights_path, "batch_size": batch_size, "key": f"metrics.{self.name}.feature_extractor_weights_path"}
        if feature_extractor == "inception":
            options["weights_sha256"] = feature_extractor_weights_sha256
        super().__init__(context, feature_extractor, options, bootstrap=bootstrap, bootstrap_seed=bootstrap_seed,
                         bootstrap_reference=bootstrap_reference)
