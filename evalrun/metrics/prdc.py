"""Precision, recall, density and coverage (Naeem et al., ICML 2020) on any backbone.

Roles as the paper (and its ``prdc`` package) define them: the reference images are the REAL
set, the generated images the FAKE set. Precision and density ask how many fakes fall in the
k-NN balls of the reals; recall asks how many reals fall in the balls of the fakes; coverage
how many reals have a fake inside their own ball (functional/prdc.py, float64, blocked).
torch-fidelity once had real and fake swapped in precision/recall (#58); the tests check the
roles with a generated set that is a tight cluster inside the reference (precision 1, low recall).

Memory: all generated features are kept (float32, 50,000 x 2048 = 400 MB for Inception pool3)
and all reference features are read; the N x M distances are never held whole. The paper used
VGG16 fc2 features; the default here is Inception pool3 (as EvalGIM and dgm-eval offer), any
registered backbone works.
"""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.backbone import backbone, describe
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.bootstrap_ci import Bootstrap, ci_outputs
from evalrun.metrics.common import ExtractorMetric

COLUMNS = ("prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage")


class PRDC(ExtractorMetric):
    name = "prdc"
    outputs = (Output("prdc_precision", "higher", fmt=".3f", label="Precision (Naeem et al., k-NN)"),
               Output("prdc_recall", "higher", fmt=".3f", label="Recall (Naeem et al., k-NN)"),
               Output("prdc_density", "higher", fmt=".3f", label="Density"),
               Output("prdc_coverage", "higher", fmt=".3f", label="Coverage"),
               *ci_outputs(*COLUMNS, fmt=".3f"))
    needs_reference = True
    seed_settings = ("bootstrap_seed",)

    def __init__(self, context: MetricContext | None = None, feature_extractor: Any = "inception",
                 feature_extractor_path: str | None = None, feature_extractor_weights_sha256: str = "official",
                 feature_extractor_target: str | None = None, feature_extractor_kwargs: dict | None = None,
                 feature_extractor_options: dict | None = None, feature_layer: str | None = None, resize: Any = None,
                 nearest_k: int = 5, batch_size: int = 50, bootstrap: int = 0, bootstrap_seed: int | None = None,
                 bootstrap_reference: bool = True) -> None:
        name, options = backbone(self.name, feature_extractor, feature_extractor_path, feature_extractor_weights_sha256,
                                 feature_extractor_target, feature_extractor_kwargs, resize, batch_size,
                                 feature_extractor_options)
        super().__init__(context, name, options, feature_layer)
        if isinstance(nearest_k, bool) or not isinstance(nearest_k, int) or nearest_k < 1:
            raise ConfigError(f"metrics.prdc.nearest_k must be an integer >= 1, got {nearest_k!r}")
        self.backbone_name, self.nearest_k = describe(name, options), int(nearest_k)
        self.bootstrap = Bootstrap(self.name, bootstrap, bootstrap_seed, bootstrap_reference, self.context.seed)
        self._features: list = []

    def required_images(self) -> int:
        return self.nearest_k + 1

    def load_reference(self) -> None:
        self._reference = self.reference.features(self.extractor, self.layer, self.name)
        if len(self._reference[0]) <= self.nearest_k:
            raise EvalrunError(f"prdc with nearest_k={self.nearest_k} needs more than {self.nearest_k} reference images, "
                               f"got {len(self._reference[0])}")

    def update(self, batch: ImageBatch) -> None:
        self._features.append(self.features(batch))

    def compute(self) -> MetricResult:
        import numpy as np

        from evalrun.metrics.functional.prdc import prdc

        fake = np.concatenate(self._features) if self._features else np.zeros((0, 1), np.float32)
        real, ref_info = self._reference
        if len(fake) <= self.nearest_k:
            raise EvalrunError(f"prdc with nearest_k={self.nearest_k} needs more than {self.nearest_k} generated images, "
                               f"got {len(fake)}")
        device = self.context.device
        values = dict(zip(COLUMNS, prdc(real, fake, self.nearest_k, device=device)))
        info: dict[str, Any] = {**self.extractor_info(), **ref_info, "prdc_n_generated": len(fake),
                                "prdc_n_reference": len(real), "prdc_nearest_k": self.nearest_k,
                                "prdc_roles": "real = reference images, fake = generated images (Naeem et al.)",
                                "prdc_distances": "Euclidean, float64; balls are open (d < radius), as the prdc package"}
        if self.bootstrap.enabled:
            def one(gen_idx, ref_idx):
                ref = real if ref_idx is None else real[ref_idx]
                return dict(zip(COLUMNS, prdc(ref, fake[gen_idx], self.nearest_k, device=device)))

            values.update(self.bootstrap.resample(one, len(fake), len(real)))
            info.update(self.bootstrap.info(len(fake), len(real)))
            info["prdc_bootstrap_note"] = ("a resample repeats images; a repeat is a neighbour at distance 0, which "
                                           "shrinks k-NN radii: the interval is indicative, not exact")
        return MetricResult(values=values, info=info)

    def settings(self) -> dict[str, Any]:
        return {**self.reference_settings(), **self.extractor_settings(),
                "feature_extractor": self.backbone_name, "nearest_k": self.nearest_k, **self.bootstrap.settings()}
