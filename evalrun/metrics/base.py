"""The metric protocol: a small stateful class with ``update`` and ``compute``, and declared outputs.

Modelled on torchmetrics: state accumulates in ``update``; ``compute`` finalises by calling
pure functions. Unlike torchmetrics there is no distributed sync (evalrun runs one process
per job; shards are merged from what they wrote) and every metric declares its output
columns (direction, format, what they depend on), so summaries and reports never guess
from column names.

Importing this module (and a metric's module) imports no torch: a run validates every
metric's settings before anything heavy loads. Models load in :meth:`Metric.load`.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from evalrun.metrics.memory_images import chw_uint8, rgb_array

DIRECTIONS = ("higher", "lower", None)
KINDS = ("score", "cost", "spread", "bound", "count", "diagnostic")


@dataclass(frozen=True)
class Output:
    """One result column a metric writes.

    ``direction``: "higher" or "lower" is better for costs (what a number took: denoiser evaluations,
    seconds, memory) and for scores, except a score where neither side is better (diversity: a model
    that ignores its prompt is diverse too), which has None: reports then say higher/lower, never
    better, and mark no best. None for spreads, bounds, counts and diagnostics (how a score was
    obtained: the R^2 and slope of FID-infinity's fit).
    ``of``: for spreads, bounds, counts and diagnostics, the score column they describe (``kid_std`` of ``kid_mean``).
    ``per_image``: the column also has one value per image in ``per_image.csv``.
    """

    column: str
    direction: str | None = None
    kind: str = "score"
    of: str | None = None
    fmt: str | None = None
    label: str | None = None
    unit: str | None = None
    per_image: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS or self.kind not in KINDS:
            raise ValueError(f"output {self.column}: direction {self.direction!r} / kind {self.kind!r} not valid")
        if (self.kind == "cost" and self.direction is None) or (self.kind not in ("score", "cost") and self.direction):
            raise ValueError(f"output {self.column}: costs have a direction, spreads, bounds, counts and "
                             f"diagnostics none")

    def describe(self, metric: str, depends_on: list[str]) -> dict[str, Any]:
        """The column's entry in ``run.json`` (``columns``)."""
        return {**{k: v for k, v in asdict(self).items() if k != "column"}, "metric": metric, "depends_on": depends_on}


@dataclass
class ImageBatch:
    """Images and what they were made from, scored as soon as they exist.

    ``images`` are uint8 (N, 3, H, W) tensors, quantised exactly as the saved PNGs are, so every
    metric scores the same pixels a user can open. ``records`` has one dict per image (prompt,
    category, challenge, seed, image_index, and for edits ``input_image`` as a uint8 (3, H, W)
    tensor plus ``input_caption``/``output_caption``). ``hashes`` are the images' pixel hashes
    (the feature cache's key); ``start`` is the position of the first image in the run.
    """

    images: Any
    records: list[dict[str, Any]]
    hashes: list[str] = field(default_factory=list)
    start: int = 0

    def __post_init__(self) -> None:
        import torch

        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.ndim != 4 \
                or self.images.shape[1] != 3:
            shape = tuple(getattr(self.images, "shape", ()))
            raise ValueError(f"ImageBatch wants uint8 (N, 3, H, W) images, got {getattr(self.images, 'dtype', type(self.images))} {shape}")
        if len(self.records) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.records)} records")
        if not self.hashes:  # a run's pixel hash (HWC pixels and shape): the same bytes at another size differ
            from evalrun.images import pixel_hash

            self.hashes = [pixel_hash(img.permute(1, 2, 0).numpy()) for img in self.images]

    @property
    def key(self) -> str:
        """Content key of the whole batch (its images, in order)."""
        from evalrun.hashing import stable_hash

        return stable_hash(self.hashes, length=32)


@dataclass
class MetricResult:
    """``values``: run-level numbers (column -> value). ``per_image``: column -> one value per
    image, in ``update`` order (empty for set metrics). ``info``: what the numbers depend on
    (model, scale, preprocessing, sample count...), written to the run's provenance."""

    values: dict[str, float]
    per_image: dict[str, list[Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricContext:
    """What a metric may need from the run besides its own settings."""

    device: Any = "cpu"               # a torch.device once the run has resolved it
    cache_dir: Path | None = None
    reference: Any = None             # the run's ``reference`` config (distribution metrics)
    seed: int = 0
    task: str | None = None
    store: Any = None                 # the run's FeatureStore (features.store), shared by all metrics
    run_dir: Path | None = None       # where the run writes (a metric that writes a file, e.g. adm's batch)


class Metric(abc.ABC):
    name: ClassVar[str]
    #: Every column ``compute`` writes, in order; the first is the headline score.
    outputs: ClassVar[tuple[Output, ...]]
    #: What each image's record must carry for this metric (``Task.provides``): ``text`` (a prompt or
    #: caption), ``input_image`` (an edit's input). Checked when the config is validated.
    needs: ClassVar[tuple[str, ...]] = ()
    #: Settings that default to the run's seed (a KID subset seed): they vary with the seed and
    #: must not split summary groups.
    seed_settings: ClassVar[tuple[str, ...]] = ()
    #: A set metric needs at least this many images (checked before any model loads).
    min_images: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # torchmetrics users call update(images) on images in memory; the runner calls update(ImageBatch).
        # Each subclass's own update takes an ImageBatch; anything else is routed through ``add``.
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("update")
        if own is not None and not getattr(own, "_accepts_images", False):
            def update(self, batch: Any, *args: Any, **fields: Any) -> None:
                with self._in_api_words():
                    if isinstance(batch, ImageBatch):
                        self._updated = True
                        return own(self, batch)
                    return self.add(batch, *args, **fields)

            update.__doc__, update.__name__, update.__qualname__ = own.__doc__, "update", own.__qualname__
            update._accepts_images = True
            cls.update = update
        # compute() before any image: one line, not an AttributeError from state update() would have made.
        own_compute = cls.__dict__.get("compute")
        if own_compute is not None and not getattr(own_compute, "_needs_images", False):
            def compute(self) -> MetricResult:
                if not getattr(self, "_updated", False):
                    from evalrun.errors import EvalrunError

                    raise EvalrunError(f"{self.name}: no images yet; call update(images, ...) before compute()")
                with self._in_api_words():
                    return own_compute(self)

            compute.__doc__, compute.__name__, compute.__qualname__ = own_compute.__doc__, "compute", \
                own_compute.__qualname__
            compute._needs_images = True
            cls.compute = compute

    def __init__(self, context: MetricContext | None = None) -> None:
        """Store and check settings only: nothing heavy here (see ``load``)."""
        self.context = context or MetricContext()

    def _in_api_words(self):
        """Errors in the keyword arguments' words for a metric the Python API made (``api`` set by it)."""
        from evalrun.errors import in_api_words

        return in_api_words(self.name, getattr(self, "api", False))

    def required_images(self) -> int:
        """The smallest image count this metric, with its settings, can score."""
        return self.min_images

    def load(self) -> None:
        """Load models and reference features, before generation starts, so a bad weights file
        or reference fails in seconds, not after the pipeline has sampled."""

    @abc.abstractmethod
    def update(self, batch: ImageBatch) -> None:
        """Accumulate statistics for a batch of images (in memory: ``update(images, prompts=...)``, see ``add``)."""

    @abc.abstractmethod
    def compute(self) -> MetricResult:
        """Finalise from the accumulated state."""

    def settings(self) -> dict[str, Any]:
        """Settings that change the number, as applied; they become result columns (``<name>.<key>``)."""
        return {}

    def add(self, images: Any, prompts: list[str] | None = None, **fields: list[Any]) -> None:
        """``update`` for images in memory: uint8 tensors or arrays, (N, 3, H, W) or (N, H, W, 3), or a list of
        PIL images; ``prompts`` and other per-image fields (``input_image``, captions...) become records.
        The channel axis is the one of size 3; where both are (3-pixel-wide images), a tensor is read as
        (N, 3, H, W) and an array as (N, H, W, 3), as torch and PIL/NumPy lay images out."""
        import numpy as np

        columns = {"prompt": prompts, **fields} if prompts is not None else dict(fields)
        for key, values in columns.items():  # a str would be scored a character per image
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
                raise ValueError(f"{key} must be a list with one value per image, got {type(values).__name__}")
        columns = {k: list(v) for k, v in columns.items()}  # by position: a pandas Series would index by label
        if isinstance(images, (list, tuple)):
            arrays = [rgb_array(im) for im in images]
            if len({a.shape for a in arrays}) > 1:  # images of several sizes: one update per run of one size
                self._check_counts(columns, len(arrays))
                start = 0
                for stop in range(1, len(arrays) + 1):
                    if stop == len(arrays) or arrays[stop].shape != arrays[start].shape:
                        self._add(np.stack(arrays[start:stop]), {k: list(v[start:stop]) for k, v in columns.items()})
                        start = stop
                return
            images = np.stack(arrays) if arrays else np.zeros((0, 0, 0, 3), np.uint8)
        if len(images) == 0:  # an empty batch (the tail of a split list) adds nothing, as in torchmetrics
            self._check_counts(columns, 0)
            return
        self._add(images, columns)

    @staticmethod
    def _check_counts(columns: dict[str, Any], n: int) -> None:
        for key, values in columns.items():
            if len(values) != n:
                raise ValueError(f"{key} has {len(values)} values for {n} images; give one per image")

    def _add(self, images: Any, columns: dict[str, Any]) -> None:
        import numpy as np
        import torch

        channels_last = isinstance(images, np.ndarray)
        if channels_last:
            images = torch.from_numpy(np.ascontiguousarray(images))
        if getattr(images, "ndim", 0) != 4:
            shape = tuple(getattr(images, "shape", ()))
            raise ValueError(f"images must be a batch, (N, 3, H, W) or (N, H, W, 3); got shape {shape}: " + (
                "add a batch axis (images[None])" if 3 in shape[:1] + shape[-1:] else "for grayscale (N, H, W) "
                "images, pass a list of them (made RGB as files are) or add channels: np.repeat(images[..., None], 3, -1)"))
        if images.shape[-1] == 3 and (channels_last or images.shape[1] != 3):
            images = images.permute(0, 3, 1, 2)
        n = len(images)
        self._check_counts(columns, n)
        if "input_image" in columns:  # an edit's inputs, read as the images are (PIL, HWC arrays, CHW tensors)
            columns = {**columns, "input_image": [chw_uint8(x) for x in columns["input_image"]]}
        records = [{k: v[i] for k, v in columns.items()} for i in range(n)]
        self.update(ImageBatch(images.contiguous(), [self._numbered(record) for record in records]))

    def _numbered(self, record: dict[str, Any]) -> dict[str, Any]:
        """An added image's ``prompt_id`` and ``image_index`` over every ``add`` (evalrun.jobs.PromptNumbering)."""
        from evalrun.jobs import PromptNumbering

        return self.__dict__.setdefault("_added_numbering", PromptNumbering())(record)

    @classmethod
    def output(cls, column: str) -> Output:
        return next(o for o in cls.outputs if o.column == column)

    @classmethod
    def score_columns(cls) -> list[str]:
        return [o.column for o in cls.outputs if o.kind == "score"]
