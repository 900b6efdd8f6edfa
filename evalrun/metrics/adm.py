"""The ADM evaluator's improved precision and recall (Kynkaanniemi et al. 2019, as guided-diffusion's
``evaluations/evaluator.py`` computes them), and the generated set written as an ADM sample batch.

- ``adm_precision``, ``adm_recall``: k=3 manifolds of Inception pool3 features (another backbone
  can be named as for ``fd``; the protocol then marks the numbers not comparable), squared
  distances in the evaluator's float16 arithmetic with its per-10,000-block float32 fallback,
  ``<=`` against the radii (functional/adm_precision_recall.py says exactly what is emulated and
  how far TensorFlow's own kernels can differ). The reference manifold is the reference batch's
  ``arr_0`` (10,000 images in the published batches); precision: samples inside it; recall:
  reference images inside the samples' manifold.
- ``write_batch``: ``true`` writes the run's images as ``run_dir/adm_batch.npz`` (``arr_0``:
  uint8 NHWC; ``arr_1``: class labels for class-conditional runs), which the original
  ``evaluator.py`` reads; a path writes there instead. The order is ``RandomState(seed).permutation``
  of the run's (``write_batch_seed``: inception_score's seed, by default the run's): a run samples
  class by class, the published batches were sampled with a random class per image, and the
  evaluator's IS takes consecutive splits (protocol=adm's IS splits the same order, so the evaluator
  reproduces it). The images are streamed to a temporary file as
  they are scored and copied into the .npz at the end (memory stays flat; disk holds the images
  twice for a moment). No statistics are written into it: the
  evaluator would then use them instead of its own TensorFlow Inception.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.backbone import backbone, describe
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.settings import setting_seed
from evalrun.metrics.bootstrap_ci import Bootstrap, ci_outputs
from evalrun.metrics.common import ExtractorMetric

BATCH_FILE = "adm_batch.npz"
ARITHMETIC = ("float16", "float32", "float64")   # functional.adm_precision_recall.ARITHMETIC (torch-free here)
COLUMNS = ("adm_precision", "adm_recall")


class ADMPrecisionRecall(ExtractorMetric):
    name = "adm"
    outputs = (Output("adm_precision", "higher", fmt=".4f", label="Precision (ADM evaluator)"),
               Output("adm_recall", "higher", fmt=".4f", label="Recall (ADM evaluator)"),
               *ci_outputs(*COLUMNS, fmt=".4f"))
    needs_reference = True
    seed_settings = ("bootstrap_seed",)

    def __init__(self, context: MetricContext | None = None, feature_extractor: Any = "inception",
                 feature_extractor_path: str | None = None, feature_extractor_weights_sha256: str = "official",
                 feature_extractor_options: dict | None = None, feature_layer: str | None = None,
                 batch_size: int = 50, k: int = 3, arithmetic: str = "float16", write_batch: Any = False,
                 write_batch_seed: int | None = None, bootstrap: int = 0, bootstrap_seed: int | None = None,
                 bootstrap_reference: bool = True) -> None:
        name, options = backbone(self.name, feature_extractor, feature_extractor_path, feature_extractor_weights_sha256,
                                 batch_size=batch_size, options=feature_extractor_options)
        super().__init__(context, name, options, feature_layer)
        self.backbone_name = describe(name, options)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"metrics.adm.k must be an integer >= 1, got {k!r}")
        if arithmetic not in ARITHMETIC:
            raise ConfigError(f"metrics.adm.arithmetic={arithmetic!r}; valid: {', '.join(ARITHMETIC)} (float16: the evaluator's)")
        if not isinstance(write_batch, (bool, str)) or write_batch == "":
            raise ConfigError(f"metrics.adm.write_batch must be false, true (run_dir/{BATCH_FILE}) or a path")
        self.k, self.arithmetic, self.write_batch = int(k), arithmetic, write_batch
        self.write_batch_seed = setting_seed(self.name, "write_batch_seed", write_batch_seed, self.context.seed)
        self.bootstrap = Bootstrap(self.name, bootstrap, bootstrap_seed, bootstrap_reference, self.context.seed)
        self._features: list = []
        self._sizes: set[str] = set()
        self._labels: list = []
        self._raw = None
        self._frame = None
        self._count = 0

    def required_images(self) -> int:
        return self.k + 1

    def load_reference(self) -> None:
        self._reference = self.reference.features(self.extractor, self.layer, self.name)

    def batch_path(self) -> Path | None:
        if self.write_batch is False:
            return None
        if self.write_batch is True:
            if self.context.run_dir is None:
                raise EvalrunError(f"metrics.adm.write_batch=true writes into the run directory, which this metric "
                                   f"was not given; set metrics.adm.write_batch=/path/{BATCH_FILE}")
            return Path(self.context.run_dir) / BATCH_FILE
        return Path(self.write_batch).expanduser()

    def update(self, batch: ImageBatch) -> None:
        self._features.append(self.features(batch))
        self._sizes.add(f"{batch.images.shape[2]}x{batch.images.shape[3]}")
        target = self.batch_path()
        if target is None:
            return
        nhwc = batch.images.permute(0, 2, 3, 1).contiguous().numpy()
        if self._raw is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._raw = open(target.parent / f"{target.name}.images.tmp", "wb")  # noqa: SIM115 (closed in compute)
            self._frame = nhwc.shape[1:]
        self._raw.write(nhwc.tobytes())
        self._count += len(nhwc)
        self._labels += [r.get("class_id") for r in batch.records]

    def _write_batch(self) -> dict[str, Any]:
        import numpy as np

        from evalrun.metrics.functional.adm_batches import write_adm_batch
        from evalrun.metrics.functional.inception_score import split_permutation

        target, raw_path = self.batch_path(), Path(self._raw.name)
        self._raw.close()
        order = split_permutation(self._count, self.write_batch_seed)
        labels = np.asarray(self._labels, np.int64)[order] if self._labels and None not in self._labels else None
        try:
            frames = np.memmap(raw_path, np.uint8, "r", shape=(self._count, *self._frame))
            write_adm_batch(target, (frames[order[lo:lo + 256]] for lo in range(0, self._count, 256)),
                            count=self._count, labels=labels)
            del frames
        finally:
            raw_path.unlink(missing_ok=True)
        return {"adm_batch_file": str(target), "adm_batch_images": self._count,
                "adm_batch_labels": labels is not None, "adm_batch_seed": self.write_batch_seed,
                "adm_batch_layout": "arr_0 uint8 NHWC in numpy RandomState(seed).permutation of run order"
                                    + (", arr_1 class labels" if labels is not None else "")}

    def compute(self) -> MetricResult:
        import numpy as np

        from evalrun.metrics.functional.adm_precision_recall import adm_precision_recall

        sample = np.concatenate(self._features) if self._features else np.zeros((0, 1), np.float32)
        ref, ref_info = self._reference
        if len(sample) <= self.k or len(ref) <= self.k:
            raise EvalrunError(f"adm precision/recall with k={self.k} needs more than {self.k} generated and reference "
                               f"images, got {len(sample)} and {len(ref)}")
        device = self.context.device

        def pr(s, r):
            return dict(zip(COLUMNS, adm_precision_recall(r, s, self.k, self.arithmetic, device=device)))

        values = pr(sample, ref)
        info: dict[str, Any] = {**self.extractor_info(), **ref_info, "adm_n_generated": len(sample),
                                "adm_n_reference": len(ref), "adm_generated_sizes": sorted(self._sizes), "adm_k": self.k, "adm_arithmetic": self.arithmetic,
                                "adm_definition": "evaluator.py compute_prec_recall: squared distances, radius = "
                                                  "(k+1)-th smallest incl. self, d <= radius, 10000-row blocks"}
        if self.bootstrap.enabled:
            values.update(self.bootstrap.resample(lambda g, r: pr(sample[g], ref if r is None else ref[r]),
                                                  len(sample), len(ref)))
            info.update(self.bootstrap.info(len(sample), len(ref)))
        if self._raw is not None:
            info.update(self._write_batch())
        return MetricResult(values=values, info=info)

    def settings(self) -> dict[str, Any]:
        return {**self.reference_settings(), **self.extractor_settings(),
                "feature_extractor": self.backbone_name, "k": self.k,
                "arithmetic": self.arithmetic, **self.bootstrap.settings()}
