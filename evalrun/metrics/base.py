"""The metric protocol: a small stateful class with ``update`` and ``compute``.

Modelled on torchmetrics: state accumulates in ``update``; ``compute`` finalises by
calling pure functions. Unlike torchmetrics there is no distributed sync (evalrun runs
one process per job) and every metric reports the settings its number depends on.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch


@dataclass
class ImageBatch:
    """Generated images and what they were made from.

    ``images`` are uint8 (N, 3, H, W), quantised exactly as the saved PNGs are, so every
    metric scores the same pixels a user can open. ``records`` has one dict per image
    (prompt, category, challenge, seed, image_index, and for edits ``input_image`` as a
    uint8 (3, H, W) tensor plus ``input_caption``/``output_caption``).
    """

    images: torch.Tensor
    records: list[dict[str, Any]]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"ImageBatch wants uint8 (N, 3, H, W) images, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if len(self.records) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.records)} records")


@dataclass
class MetricResult:
    """``values``: run-level numbers (column -> value). ``per_image``: column -> one value
    per image, in ``update`` order (empty for set metrics). ``info``: what the numbers
    depend on (model, scale, preprocessing, sample count...), written to the run's provenance."""

    values: dict[str, float]
    per_image: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricContext:
    """What a metric may need from the run besides its own settings."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Path | None = None
    reference: Any = None  # the run's ``reference`` config (distribution metrics)
    seed: int = 0


class Metric(abc.ABC):
    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    #: "per_image" metrics also fill ``MetricResult.per_image``; "set" metrics score the whole set.
    kind: ClassVar[str] = "per_image"
    #: Tasks the metric can score (None: any); checked when the config is validated.
    tasks: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, context: MetricContext | None = None) -> None:
        self.context = context or MetricContext()

    def prepare(self) -> None:
        """Load or compute what the metric needs besides the generated images (reference
        features), before generation starts, so a bad reference fails in seconds."""

    @abc.abstractmethod
    def update(self, batch: ImageBatch) -> None:
        """Accumulate statistics for a batch of images."""

    @abc.abstractmethod
    def compute(self) -> MetricResult:
        """Finalise from the accumulated state."""

    def settings(self) -> dict[str, Any]:
        """Settings that change the number; they become result columns (``<name>.<key>``)."""
        return {}
