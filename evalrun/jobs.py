"""Image jobs: which images a run makes, and the seed of each one's generator.

Each image's noise comes from its own ``torch.Generator`` seeded from (run seed, prompt id,
image index), drawn on the CPU, so an image does not depend on the batch size, on which
prompts share its batch, on the device, or on how a run is split into shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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


class PromptNumbering:
    """Numbers images as a run numbers its own, for images that come without a prompt set (scored files,
    images added in memory): one prompt id per distinct prompt (and input image, for edits) in order of first
    appearance, or the ``prompt_id`` a record gives; each prompt's images counted from 0; a record without a
    prompt is a prompt of its own. Diversity groups by these ids and reports pair by them. Kept across
    calls: images added in several batches are numbered as one set."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}
        self.counts: dict[Any, int] = {}

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        if "prompt_id" in record:
            prompt_id = record["prompt_id"]
        else:
            text = record.get("prompt")
            key = ("prompt", text, record.get("input_path")) if text is not None else object()
            prompt_id = self.ids.setdefault(key, len(self.ids))
        image_index = self.counts[prompt_id] = self.counts.get(prompt_id, -1) + 1
        return {**record, "prompt_id": prompt_id, "image_index": image_index}
