"""Where an image is scored: the stream of images is cut into chunks of 64 in run order, and each
chunk goes to every metric as soon as it exists, then is dropped.

Set metrics keep their sufficient statistics or features, per-image metrics their values, the
grid only the images it draws: memory stays flat in the number of images. Chunks are fixed in
size and order, so every number is the same whatever the generation batch size, and the
feature store can recognise a chunk it has seen before (after a kill, or in another run).
"""

from __future__ import annotations

import logging
from typing import Any

from evalrun.metrics.base import ImageBatch, MetricResult
from evalrun.metrics.features import store as feature_store

log = logging.getLogger(__name__)


class StreamScorer:
    def __init__(self, metrics: dict[str, Any], store: Any, grid: Any, seed: int, chunk: int | None = None) -> None:
        # The chunk size is read when a run starts (not bound at import), so tests can shrink it.
        self.metrics, self.store, self.grid, self.seed = metrics, store, grid, seed
        self.chunk = chunk or feature_store.CHUNK
        self._buffer: list = []
        self.rows: list[dict[str, Any]] = []  # one per image: what images.csv records
        self.costs: list[dict[str, Any]] = []
        self.n = 0

    def add(self, produced) -> None:
        """One image (a ``generate.Produced``), in run order."""
        job = produced.job
        self.rows.append({"image_id": job.image_id, "path": produced.path,
                          "prompt_index": job.prompt_index, **record_columns(job.record),
                          "seed": job.record.get("seed", self.seed),
                          "image_index": job.image_index, "generator_seed": job.generator_seed,
                          "degenerate": produced.flag, "pixels": produced.digest, "reused": produced.reused,
                          "nfe": produced.cost.get("nfe"), "sample_seconds": produced.cost.get("seconds")})
        self.costs.append(produced.cost)
        if self.grid is not None:
            self.grid.add(produced.index, produced.image)
        self._buffer.append(produced)
        if len(self._buffer) == self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        import numpy as np
        import torch

        chunk, self._buffer = self._buffer, []
        # Images of one size are scored together; existing images of mixed sizes go as consecutive
        # same-size runs (order kept: per-image values stay aligned). Every backbone resizes itself.
        start = 0
        while start < len(chunk) and self.metrics:
            end = start + 1
            while end < len(chunk) and chunk[end].image.shape == chunk[start].image.shape:
                end += 1
            part = chunk[start:end]
            pixels = torch.from_numpy(np.stack([p.image.transpose(2, 0, 1) for p in part]))  # NCHW in one copy
            records = [{**p.job.record, "seed": p.job.record.get("seed", self.seed), "image_index": p.job.image_index}
                       for p in part]
            batch = ImageBatch(pixels, records, hashes=[p.digest for p in part], start=self.n + start)
            for metric in self.metrics.values():
                metric.update(batch)
            start = end
        self.n += len(chunk)

    def finish(self) -> dict[str, MetricResult]:
        self.flush()
        return {name: metric.compute() for name, metric in self.metrics.items()}


def record_columns(record: dict[str, Any]) -> dict[str, Any]:
    """Scalar fields of a prompt record (tensors such as input images stay out of CSVs)."""
    return {k: v for k, v in record.items() if isinstance(v, (str, int, float, bool)) or v is None}
