"""Prompts x images -> uint8 images on disk, one CPU generator per image.

Each image's noise comes from its own ``torch.Generator`` seeded from (run seed, prompt id,
image index), drawn on the CPU, so an image does not depend on the batch size, on which
prompts share its batch, or on the device. Images are quantised to uint8 once, exactly as
a PNG stores them, and every metric scores those pixels.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from evalrun.errors import EvalrunError

log = logging.getLogger(__name__)


@dataclass
class ImageJob:
    prompt_index: int  # position in this run's prompt list
    record: dict[str, Any]
    image_index: int
    generator_seed: int

    @property
    def image_id(self) -> str:
        return f"{self.prompt_index:05d}_{self.image_index:02d}"


def generator_seed(seed: int, prompt_id: int, image_index: int) -> int:
    """A 63-bit seed mixed from the three integers (SeedSequence: no collisions in practice,
    unlike ``seed * K + i`` schemes that overlap between neighbouring seeds)."""
    return int(np.random.SeedSequence([seed, int(prompt_id), image_index]).generate_state(1, np.uint64)[0] >> 1)


def image_jobs(records: list[dict[str, Any]], num_images_per_prompt: int, seed: int) -> list[ImageJob]:
    return [ImageJob(p, rec, i, generator_seed(seed, rec["prompt_id"], i))
            for p, rec in enumerate(records) for i in range(num_images_per_prompt)]


# ----------------------------------------------------------------------------- task calls
# Each task turns a batch of jobs into the pipeline's keyword arguments.
def _text2img(pipe, jobs: list[ImageJob], params: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": [j.record["prompt"] for j in jobs], "num_inference_steps": params["steps"],
            "guidance_scale": params["guidance_scale"], "height": params["height"], "width": params["width"]}


def _class2img(pipe, jobs: list[ImageJob], params: dict[str, Any]) -> dict[str, Any]:
    return {"class_labels": [int(j.record["class_id"]) for j in jobs], "num_inference_steps": params["steps"],
            "guidance_scale": params["guidance_scale"]}


def _unconditional(pipe, jobs: list[ImageJob], params: dict[str, Any]) -> dict[str, Any]:
    return {"batch_size": len(jobs), "num_inference_steps": params["steps"]}


TASK_CALLS: dict[str, Callable[[Any, list[ImageJob], dict[str, Any]], dict[str, Any]]] = {
    "text2img": _text2img, "class2img": _class2img, "unconditional": _unconditional,
}


def register_task(name: str, call: Callable[[Any, list[ImageJob], dict[str, Any]], dict[str, Any]]) -> None:
    TASK_CALLS[name] = call


# ----------------------------------------------------------------------------- images
def to_uint8(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float (N, H, W, 3) in [0, 1] -> uint8 as diffusers' ``numpy_to_pil`` rounds; and NaN flags."""
    images = np.asarray(images, dtype=np.float32)
    nan = np.isnan(images).reshape(len(images), -1).any(axis=1)
    return (np.nan_to_num(images, nan=0.0).clip(0, 1) * 255).round().astype(np.uint8), nan


def degenerate_flag(image: np.ndarray, had_nan: bool) -> str:
    """'' for a normal image; 'nan', 'black' or 'constant' for images that distort metrics."""
    if had_nan:
        return "nan"
    if image.max() == 0:
        return "black"
    if image.min() == image.max():
        return "constant"
    return ""


def save_png(image: np.ndarray, path: Path) -> None:
    """Write atomically: a killed run never leaves a truncated PNG that a re-run would trust."""
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def sample(pipe, task: str, jobs: list[ImageJob], params: dict[str, Any], batch_size: int):
    """Yield (jobs, float images (B, H, W, 3) in [0, 1]) batch by batch, one generator per image."""
    call = TASK_CALLS[task]
    batches = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
    for batch in tqdm(batches, desc="generate", unit="batch", disable=not batches):
        generators = [torch.Generator("cpu").manual_seed(j.generator_seed) for j in batch]
        # Some pipelines (DiT) call scheduler.step without the generators, so stochastic
        # schedulers fall back to the global RNG there: seed it too, so such runs still repeat.
        torch.manual_seed(batch[0].generator_seed)
        try:
            out = pipe(**call(pipe, batch, params), generator=generators, output_type="np")
        except (ValueError, TypeError) as exc:
            raise EvalrunError(f"{type(pipe).__name__} rejected the generation arguments: {exc}") from None
        yield batch, out.images if hasattr(out, "images") else out[0]


def generate(pipe, task: str, jobs: list[ImageJob], params: dict[str, Any], image_dir: Path,
             batch_size: int, key: str) -> tuple[list[np.ndarray], list[str]]:
    """Generate (or reuse) every job's image; returns uint8 HWC images and degenerate flags.

    Images already on disk from an interrupted run with the same generation ``key`` are
    reused; a different key (other model, scheduler, steps...) discards them.
    """
    image_dir.mkdir(parents=True, exist_ok=True)
    key_file = image_dir / ".generation_key"
    if not key_file.exists() or key_file.read_text() != key:
        for old in image_dir.glob("*.png"):
            old.unlink()
        key_file.write_text(key)
    images: dict[int, np.ndarray] = {}
    flags: dict[int, str] = {}
    todo = []
    for n, job in enumerate(jobs):
        path = image_dir / f"{job.image_id}.png"
        if path.exists():
            images[n] = load_png(path)
            flags[n] = degenerate_flag(images[n], False)
        else:
            todo.append(n)
    if len(todo) < len(jobs):
        log.info("reusing %d finished images from %s", len(jobs) - len(todo), image_dir)
    done = 0
    for batch, result in sample(pipe, task, [jobs[n] for n in todo], params, batch_size):
        uint8, nan = to_uint8(result)
        for job, image, had_nan in zip(batch, uint8, nan):
            n = todo[done]
            save_png(image, image_dir / f"{job.image_id}.png")
            images[n], flags[n] = image, degenerate_flag(image, bool(had_nan))
            done += 1
    bad = [f for f in flags.values() if f]
    if bad:
        log.warning("%d of %d images are degenerate (%s): they distort FID and CLIP score; see per_image.csv",
                    len(bad), len(jobs), ", ".join(sorted(set(bad))))
    return [images[n] for n in range(len(jobs))], [flags[n] for n in range(len(jobs))]


def make_grid(images: list[np.ndarray], cols: int, max_images: int) -> Image.Image:
    """Prompts as rows, images per prompt as columns (like diffusers' ``make_image_grid``)."""
    images = images[:max(cols, (max_images // cols) * cols)]
    rows = (len(images) + cols - 1) // cols
    h, w = images[0].shape[:2]
    grid = Image.new("RGB", (cols * w, rows * h))
    for i, image in enumerate(images):
        tile = Image.fromarray(image)
        if tile.size != (w, h):
            tile = tile.resize((w, h))
        grid.paste(tile, ((i % cols) * w, (i // cols) * h))
    return grid
