"""The run's feature store: each backbone sees each image once per run, and never twice across runs.

Images are scored in chunks of :data:`CHUNK` in run order (so numbers do not depend on the
generation batch size). For each chunk and extractor the store:

1. returns features already computed for this chunk in this run (another metric asked first);
2. else reads them from the on-disk feature cache, keyed by the extractor's key and the chunk's
   pixel hashes, so adding a metric to a finished run, re-running after a kill, or re-running a
   sweep into a new directory extracts nothing twice, and shards of one run can be merged from
   what each wrote;
3. else extracts and writes them there (atomically).

Only the current chunk's features stay in memory. Texts (prompts, captions) and images that
repeat within a run (an edit's input image, seen once per seed) are embedded once per run and
memoised by content.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from evalrun.hashing import bytes_hash
from evalrun.results import shared_mode

log = logging.getLogger(__name__)
CHUNK = 64  # images scored together; fixed, so the float32 round-off of features is too


class FeatureStore:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        """``root``: the on-disk feature cache (None: this run's memory only)."""
        self.root = Path(root) if root else None
        self._chunk: tuple[str, dict[str, dict[str, np.ndarray]]] = ("", {})
        self._texts: dict[tuple[str, str], Any] = {}
        self._images: dict[tuple[str, str], Any] = {}
        self.extracted = 0  # images passed through a backbone in this run (all extractors)
        self.reused = 0     # images whose features came from the cache
        self.truncated: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ generated images
    def features(self, extractor, batch) -> dict[str, np.ndarray]:
        """{layer: (n, dim)} features of ``batch`` (an ImageBatch) from ``extractor``."""
        chunk_key, memo = self._chunk
        if chunk_key != batch.key:
            memo = {}
            self._chunk = (batch.key, memo)
        if extractor.key not in memo:
            memo[extractor.key] = self._cached(extractor, batch)
        return memo[extractor.key]

    def _path(self, extractor, batch) -> Path | None:
        return None if self.root is None else self.root / extractor.key / batch.key[:2] / f"{batch.key}.npz"

    def _cached(self, extractor, batch) -> dict[str, np.ndarray]:
        path = self._path(extractor, batch)
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as f:
                    if list(f["hashes"]) == list(batch.hashes):
                        self.reused += len(batch.hashes)
                        return {layer: f[layer] for layer in extractor.layers}
            # A damaged cache file is recomputed, never trusted (a cut or altered zip fails numpy's own checks).
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
                log.warning("feature cache file %s is unreadable; recomputing it", path)
        feats = extractor.extract(batch.images, "generated images", getattr(batch, "start", 0))  # a SavedChunk has none
        self.extracted += len(batch.hashes)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp.npz")
            os.close(fd)
            try:
                np.savez(tmp, hashes=np.asarray(batch.hashes), **feats)
                shared_mode(tmp)
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        return feats

    # ------------------------------------------------------------------ texts and repeated images
    def texts(self, extractor, texts: list[str]):
        """Text embeddings (torch, float32, CPU), each distinct text encoded once per run."""
        import torch

        new = [t for t in dict.fromkeys(texts) if (extractor.key, t) not in self._texts]
        if new:
            flags = extractor.count_truncated(new)
            self.truncated.setdefault(extractor.key, set()).update(t for t, cut in zip(new, flags) if cut)
            for text, emb in zip(new, extractor.encode_texts(new)):
                self._texts[(extractor.key, text)] = emb
        return torch.stack([self._texts[(extractor.key, t)] for t in texts])

    def truncated_texts(self, extractor) -> int:
        return len(self.truncated.get(extractor.key, ()))

    def unique_images(self, extractor, images: list):
        """Embeddings of uint8 (3, H, W) images, each distinct image (by pixels) encoded once per run;
        new images are encoded together, grouped by shape. Identical pixels give identical embeddings
        (an unchanged edit has an exactly zero direction)."""
        import torch

        keys = [bytes_hash(img.contiguous().numpy().tobytes()) + "x".join(map(str, img.shape)) for img in images]
        new = {k: img for k, img in zip(keys, images) if (extractor.key, k) not in self._images}
        by_shape: dict[tuple, list[str]] = {}
        for k, img in new.items():
            by_shape.setdefault(tuple(img.shape), []).append(k)
        for group in by_shape.values():
            embeddings = extractor.encode_images(torch.stack([new[k] for k in group]))
            for k, emb in zip(group, embeddings):
                self._images[(extractor.key, k)] = emb
        return torch.stack([self._images[(extractor.key, k)] for k in keys])
