"""What metrics built on a feature extractor share: the extractor as a setting, loaded once, read
through the run's feature store, and the run's reference set.

A metric names its backbone (``feature_extractor``) and the backbone's options; ``load`` builds
it through the registry (once per process), so FID on DINOv2 is FID's code with another setting.
"""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError
from evalrun.metrics.base import ImageBatch, Metric, MetricContext
from evalrun.metrics.settings import setting_int

# text_key=auto (scoring images made elsewhere): an edit pair's output caption, any other image's prompt.
AUTO_TEXT = "auto"


def texts_of(batch: ImageBatch, key: str, metric: str) -> list[str]:
    """Each image's text for a text-image score: the record's ``key`` field. ``auto`` is the output caption where
    a record has one (an edit pair: its ``prompt`` is the instruction, not a description of the edit), else the
    prompt."""
    def text(record: dict[str, Any]) -> Any:
        if key == AUTO_TEXT:
            return record.get("output_caption") if record.get("output_caption") is not None else record.get("prompt")
        return record.get(key)

    texts = [text(r) for r in batch.records]
    missing = [i for i, t in enumerate(texts) if t is None]
    if missing:
        raise ConfigError(f"{metric}: {len(missing)} image(s) have no {key!r} text; set metrics.{metric}.text_key "
                          f"to a record field that holds the prompt")
    return [str(t) for t in texts]


TEXT_KEYS = ("text_key", "input_text_key", "output_text_key")  # metric settings naming a record field


def check_text_keys(metrics: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Each metric's text settings name a field the run's records have, checked as soon as they are read: a
    misspelt ``text_key`` failed in ``update``, after the pipeline had loaded and sampled. A field that is
    there but empty in some record (class words filled in once the pipeline is loaded) is left to ``update``."""
    fields = {key for record in records for key in record}
    for name, metric in metrics.items():
        for setting in TEXT_KEYS:
            key = getattr(metric, setting, None)
            if records and isinstance(key, str) and key != AUTO_TEXT and key not in fields:
                texts = sorted(k for k in fields if any(isinstance(r.get(k), str) for r in records))
                raise ConfigError(f"metrics.{name}.{setting}={key!r}: the records have no {key!r} field; fields "
                                  f"with text: {', '.join(texts) or 'none'}")


# The layer a Frechet distance / kernel metric uses on each backbone by default.
DEFAULT_LAYERS = {"inception": "2048", "clip": "embedding", "dinov2": "embedding", "torchscript": "embedding",
                  "python": "embedding"}


class ExtractorMetric(Metric):
    """Base of metrics over one extractor's features (and optionally the run's reference)."""

    needs_reference = False
    layer_setting = "feature_layer"  # the config key that names the layer, in messages

    def __init__(self, context: MetricContext | None, feature_extractor: str, options: dict[str, Any],
                 layer: str | None = None) -> None:
        super().__init__(context)
        from evalrun.metrics.features import check_options, extractor_class

        if options.get("batch_size") is not None:  # never int()-truncated: batch_size=2.5 ran at 2, recorded 2.5
            options = {**options, "batch_size": setting_int(self.name, "batch_size", options["batch_size"], 1)}
        self.extractor_name = str(feature_extractor)
        self.extractor_options = {k: v for k, v in options.items() if v is not None}
        check_options(self.extractor_name, self.extractor_options, f"metrics.{self.name}")
        # str(): Hydra reads feature_layer=2048 (Inception's pool layer, named "2048") as an int.
        self.layer = (str(layer) if layer is not None else None) or DEFAULT_LAYERS.get(self.extractor_name) \
            or extractor_class(self.extractor_name).default_layer
        if self.layer is None:
            raise ConfigError(f"metrics.{self.name}.{self.layer_setting}: say which feature layer of {self.extractor_name} "
                              f"to use")
        self.extractor = None
        self.reference = None
        if self.needs_reference:
            from evalrun.reference.spec import ReferenceSpec

            self.reference_spec = ReferenceSpec.from_config(self.context.reference, self.name)

    def load(self) -> None:
        from evalrun.metrics.features import build_extractor

        self.extractor = build_extractor(self.extractor_name, self.context.device, **self.extractor_options)
        if self.layer not in self.extractor.layers:
            raise ConfigError(f"metrics.{self.name}.{self.layer_setting}={self.layer!r}: {self.extractor_name} gives "
                              f"{', '.join(self.extractor.layers)}")
        if self.needs_reference:
            from evalrun.reference.cache import Reference

            self.reference = Reference(self.reference_spec, self.context.cache_dir)
            self.load_reference()

    def load_reference(self) -> None:
        """Read (or compute once) what the metric needs of the reference, before generation."""

    def features(self, batch: ImageBatch, layer: str | None = None):
        """This metric's features of ``batch``, from the run's store (computed once per backbone)."""
        return self.store().features(self.extractor, batch)[layer or self.layer]

    def store(self):
        """The run's feature store (loading the metric first if nobody has): a metric used on its own
        (Python API, tests) gets a private store on its context, shared by metrics of that context."""
        if self.extractor is None:
            self.load()
        if self.context.store is None:
            from evalrun.metrics.features.store import FeatureStore

            self.context.store = FeatureStore()
        return self.context.store

    def reference_settings(self) -> dict[str, Any]:
        """The reference as result columns: where it is and what it holds (the cache key of its images'
        content, or an .npz's sha256), so runs against changed reference images are not averaged together."""
        info = getattr(self, "_reference", None)
        key = info[1].get("reference_cache_key") if info else None
        if key is None and self.reference_spec.kind in ("npz", "adm"):  # statistics read from the file itself
            from evalrun.hashing import file_sha256

            key = file_sha256(self.reference_spec.path)[:32]
        return {"reference": self.reference_spec.describe(), "reference_key": key}

    def extractor_info(self) -> dict[str, Any]:
        return {**self.extractor.info(), "feature_layer": self.layer}

    def extractor_settings(self) -> dict[str, Any]:
        """Result columns that say which backbone made the number (its weights' hash, short)."""
        return {"feature_extractor": self.extractor_name, "feature_layer": self.layer,
                **extractor_digests(self.extractor)}


def extractor_digests(extractor: Any) -> dict[str, str | None]:
    """A backbone's weights hash (short) and, for a class of the user's (``feature_extractor=python`` or one
    registered from outside evalrun), its code's: an edit of either gives other numbers, so the runs are
    another configuration in the summary, not more seeds of the same one (the caches already key on both)."""
    weights = extractor.weights_identity() if extractor is not None else {}
    digest = weights.get("sha256") or weights.get("tensors_sha256") or _files_digest(weights)
    found = {"weights_sha256": (digest or "")[:16] or None}
    code = weights.get("source_sha256") or (extractor.identity().get("source_sha256") if extractor is not None else None)
    if code:
        found["code_sha256"] = code[:16]
    return found


def _files_digest(weights: dict[str, Any]) -> str | None:
    from evalrun.hashing import stable_hash

    return stable_hash(weights["files"], length=64) if weights.get("files") else None
