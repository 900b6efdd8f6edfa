"""Image jobs -> uint8 images, streamed in run order: reused where a verified copy exists, sampled otherwise.

On a GPU (``outputs.overlaps_sampling``) the next batch samples on a thread while this one is
hashed, handed to the PNG writers and scored, so the GPU does not wait for the CPU; on the CPU all
of it runs in line. Either way images come out in run order, with the same pixels.

Sampling uses one CPU ``torch.Generator`` per image (seeded in ``jobs.generator_seed``), so an
image does not depend on the batch size, on which prompts share its batch, or on the device's
RNG. Images are quantised to uint8 once, exactly as a PNG stores them, and every metric scores
those pixels.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from evalrun.errors import EvalrunError
from evalrun.hashing import stable_hash
from evalrun.images import (ImageStore, Manifest, degenerate_flag, link_or_copy, pixel_hash, read_verified, same_bytes,
                            save_png, to_uint8)
from evalrun.jobs import ImageJob
from evalrun.threads import Ahead, Inline, png_writers

log = logging.getLogger(__name__)
MAX_QUEUED = 256  # images handed to the writers and not yet on disk, at most


@dataclass
class Produced:
    """One image of the run, in job order."""

    index: int            # position in the run's job list
    job: ImageJob
    image: np.ndarray     # uint8 (H, W, 3)
    digest: str           # pixel hash
    flag: str             # '' or nan / black / constant
    reused: bool
    cost: dict[str, Any]  # nfe, seconds (per image) and peak_gib of the call that sampled it
    path: str = ""        # relative to the run dir; images/<image_id>.png unless read from elsewhere

    def __post_init__(self) -> None:
        self.path = self.path or f"images/{self.job.image_id}.png"


def image_key(generation_key: str, job: ImageJob) -> str:
    """What determines one image's pixels: the run's generation key, the job's condition and its noise."""
    condition = {k: v for k, v in job.record.items() if isinstance(v, (str, int, float, bool)) or v is None}
    condition.pop("prompt_index", None)
    extra = job.record.get("input_image")
    if extra is not None and hasattr(extra, "numpy"):  # an edit's input pixels, not only its path
        condition["input_pixels"] = pixel_hash(extra.permute(1, 2, 0).numpy())
    return stable_hash({"generation": generation_key, "condition": condition, "generator_seed": job.generator_seed},
                       length=40)


def _seed_global_rng(seed: int) -> None:
    """``torch.manual_seed``, without its CUDA part while CUDA is not initialised: torch then queues
    that seed with a formatted stack trace (80 us a batch on the CPU), and a pipeline sampling on CUDA
    has initialised it before its first batch. Asking the pipeline for its device instead walked its
    modules (1 ms a batch)."""
    import torch

    if torch.cuda.is_initialized() or torch.backends.mps.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def sample(pipe, task, jobs: list[ImageJob], params: dict[str, Any], cost: dict[str, Any] | None = None,
           warmup: bool = False) -> np.ndarray:
    """Float images (B, H, W, 3) in [0, 1] for one batch, one generator per image; ``cost`` (if given)
    receives what the call took per image (evalrun.cost.measure). ``warmup``: a call in which the denoiser met
    a shape for the first time is made again, and the second one is kept and timed (evalrun.cost)."""
    import torch

    from evalrun.acceleration import sampling
    from evalrun.cost import measure

    try:
        for _ in range(2):
            kwargs = task.pipeline_kwargs(pipe, jobs, params)  # fresh lists each call: Z-Image rewrites them
            generators = [torch.Generator("cpu").manual_seed(j.generator_seed) for j in jobs]
            # Some pipelines (DiT) call scheduler.step without the generators, so stochastic schedulers
            # fall back to the global RNG there: seed it too, so such runs still repeat.
            _seed_global_rng(jobs[0].generator_seed)
            with measure(pipe, len(jobs)) as measured, sampling(pipe):
                out = pipe(**kwargs, generator=generators, output_type="np")
            if not (warmup and cost is not None and measured.pop("cold")):
                break
    except (ValueError, TypeError) as exc:
        raise EvalrunError(f"{type(pipe).__name__} rejected the generation arguments: {exc}") from None
    measured.pop("cold", None)
    if cost is not None:
        cost.update(measured)
    return out.images if hasattr(out, "images") else out[0]


class ImageStream:
    """Yields every job's image in order; call :meth:`run` with a ``pipe_factory`` that loads the
    pipeline only if some image has to be sampled (a finished or fully stored run loads nothing)."""

    def __init__(self, jobs: list[ImageJob], image_dir: Path, generation_key: str, store: ImageStore,
                 batch_size: int, shape: tuple[int, ...] | None = None, sources: list[Path] | None = None,
                 threaded: bool = True, warmup: bool = True) -> None:
        self.jobs, self.image_dir, self.generation_key = jobs, Path(image_dir), generation_key
        self.store, self.batch_size, self.shape = store, batch_size, shape
        self.requested_batch_size = batch_size  # batch_size may be halved on out-of-memory; timings name the request
        self.image_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(self.image_dir)
        self.keys = [image_key(generation_key, j) for j in jobs]
        # Other runs' folders to reuse images from by key (a merge reads its shards'), besides the store.
        self.sources = [(Path(d) / "images", Manifest(Path(d) / "images")) for d in sources or []]
        self.sampled = self.reused = self.repaired = 0
        import threading

        self.threaded = threaded  # PNG writer threads, and sampling one batch ahead (see threads.Ahead)
        self.warmup = warmup  # a batch at a new denoiser shape sampled again, the second call timed (evalrun.cost)
        self._pool = png_writers() if threaded else Inline()
        self._writes: collections.deque = collections.deque()
        self._manifest_lock = threading.Lock()

    def _path(self, job: ImageJob) -> Path:
        return self.image_dir / f"{job.image_id}.png"

    def _reuse(self, n: int) -> Produced | None:
        job, key = self.jobs[n], self.keys[n]
        entry = self.manifest.entries.get(job.image_id)
        path = self._path(job)
        if entry and entry.get("key") == key and path.exists():
            found = read_verified(path, entry.get("pixels"), self.shape)
            if found is not None:
                return Produced(n, job, found[0], entry["pixels"], entry.get("flag", ""), True,
                                entry.get("cost") or found[2])
            log.warning("image %s is unreadable, of the wrong size or not the image this run wrote: regenerating it",
                        path)
            self.repaired += 1
        for folder, manifest in self.sources:
            other = manifest.entries.get(job.image_id)
            if other and other.get("key") == key:
                found = read_verified(folder / f"{job.image_id}.png", other.get("pixels"), self.shape)
                if found is not None:
                    link_or_copy(folder / f"{job.image_id}.png", path)
                    self.manifest.add(job.image_id, key, other["pixels"], found[1], found[2])
                    return Produced(n, job, found[0], other["pixels"], found[1], True, found[2])
        stored = self.store.get(key, self.shape)
        if stored is None:
            return None
        image, flag, digest, cost = stored
        link_or_copy(self.store.path(key), path)
        self.manifest.add(job.image_id, key, digest, flag, cost)
        return Produced(n, job, image, digest, flag, True, cost)

    def _write(self, n: int, image: np.ndarray, had_nan: bool, cost: dict[str, Any]) -> Produced:
        """Hand a sampled image to the writer pool and return it for scoring at once: PNG encoding
        (which releases the GIL) overlaps sampling, so the accelerator stays busy (``threaded=False``,
        for CPU sampling: written at once).
        The manifest line is appended only once the file is in place, so a kill never leaves a
        listed image that is not on disk."""
        job, key = self.jobs[n], self.keys[n]
        digest, flag = pixel_hash(image), degenerate_flag(image, had_nan)
        while len(self._writes) >= MAX_QUEUED:  # bounded: images waiting to be written are held in memory
            self._writes.popleft().result()
        self._writes.append(self._pool.submit(self._save, job, key, image, digest, flag, cost))
        return Produced(n, job, image, digest, flag, False, cost)

    def _save(self, job: ImageJob, key: str, image: np.ndarray, digest: str, flag: str, cost: dict[str, Any]) -> None:
        stored = self.store.put(key, image, digest, flag, cost)
        if stored is not None:
            link_or_copy(stored, self._path(job))
        else:
            save_png(image, self._path(job), digest, flag, cost)
        with self._manifest_lock:
            self.manifest.add(job.image_id, key, digest, flag, cost)

    def run(self, pipe_factory, task, params: dict[str, Any], progress=None, wait: bool = True) -> Iterator[Produced]:
        """``wait=False``: PNG writes may still be under way when the last image is yielded (the caller
        then calls :meth:`wait` before the run is marked complete); after an error they are always waited for."""
        finished = False
        try:
            yield from self._run(pipe_factory, task, params, progress)
            finished = True
        finally:
            if wait or not finished:
                self.wait()

    def wait(self) -> None:
        """Every image handed to the writers is on disk (and a write error surfaces here)."""
        while self._writes:
            self._writes.popleft().result()

    def _fitting(self, pipe, task, params: dict[str, Any], batch: list[int]):
        """Sample ``batch``; on a CUDA out-of-memory error halve it (and every later batch) and go on."""
        from evalrun.acceleration import is_out_of_memory

        try:
            cost: dict[str, Any] = {}
            images = to_uint8(sample(pipe, task, [self.jobs[n] for n in batch], params, cost, self.warmup))
            cost["batch_size"] = self.requested_batch_size  # the run's settings the timing belongs to
            cost["call_images"] = len(batch)  # and the call's own size: a last batch, or one cut by reuse, is smaller
            cost["timing_warmup"] = self.warmup
            yield {**cost, "_jobs": batch}, images
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
            if len(batch) == 1 or not is_out_of_memory(exc):
                raise
            import torch

            torch.cuda.empty_cache()
            # The halves are cut with this size even if a half runs out of memory too and halves
            # self.batch_size again (slicing with the new size here lost the batch's last images).
            half = self.batch_size = max(1, len(batch) // 2)
            log.warning("out of GPU memory at batch %d: continuing at batch %d", len(batch), half)
            for start in range(0, len(batch), half):
                yield from self._fitting(pipe, task, params, batch[start:start + half])

    def _sampled(self, pipe, task, params: dict[str, Any], batch: list[int]) -> list:
        """One batch's (cost, (uint8 images, nan flags)) parts, on the sampling thread when sampling ahead.
        Holds ``numerics.TORCH_SWITCHES`` for the call: feature extraction (on the caller's thread) never
        flips TF32 in the middle of it."""
        from evalrun.numerics import TORCH_SWITCHES

        with TORCH_SWITCHES:
            return list(self._fitting(pipe, task, params, batch))

    def _run(self, pipe_factory, task, params: dict[str, Any], progress=None) -> Iterator[Produced]:
        pending: list[int] = []
        ahead = Ahead(self.threaded)
        pipe = None

        def submit() -> None:
            nonlocal pipe
            if pending:
                if pipe is None:
                    pipe = pipe_factory()
                ahead.submit(self._sampled, pipe, task, params, list(pending))
                pending.clear()

        def take(keep: int) -> Iterator[Produced]:
            """Every submitted batch but the last ``keep``, hashed, handed to the writers and yielded."""
            for parts in ahead.take(keep):
                n_images = 0
                for cost, (images, nan) in parts:
                    for n, image, had_nan in zip(cost.pop("_jobs"), images, nan):
                        self.sampled += 1
                        n_images += 1
                        yield self._write(n, image, bool(had_nan), cost)
                if progress is not None:
                    progress(n_images)

        try:
            for n in range(len(self.jobs)):
                found = self._reuse(n)
                if found is None:
                    pending.append(n)
                    if len(pending) >= self.batch_size:  # >=: an out-of-memory error may halve it meanwhile
                        submit()
                        yield from take(ahead.depth)  # the batch before samples on while this one is scored
                    continue
                submit()  # keep run order: a reused image waits for the sampled ones before it
                yield from take(0)
                self.reused += 1
                if progress is not None:
                    progress(1)
                yield found
            submit()
            yield from take(0)
        finally:
            ahead.close()


class ReadStream:
    """For tasks that read existing images: each job's file is read, verified by its pixels, and
    copied into the run's ``images/`` folder under the job's id, keeping its format."""

    def __init__(self, jobs: list[ImageJob], image_dir: Path, task) -> None:
        self.jobs, self.image_dir, self.task = jobs, Path(image_dir), task
        self.image_dir.mkdir(parents=True, exist_ok=True)
        self.sampled = self.reused = self.repaired = 0

    def wait(self) -> None:
        """Nothing to wait for: files are linked or copied as they are read."""

    def run(self, pipe_factory=None, task=None, params=None, progress=None, wait: bool = True) -> Iterator[Produced]:
        for n, job in enumerate(self.jobs):
            image, source = self.task.read_image(job)
            target = self.image_dir / f"{job.image_id}{source.suffix.lower()}"
            if not same_bytes(source, target):  # the file scored, whatever a previous run left there
                link_or_copy(source, target, link=False)
            self.reused += 1
            if progress is not None:
                progress(1)
            yield Produced(n, job, image, pixel_hash(image), degenerate_flag(image, False), True, {},
                           f"images/{target.name}")
