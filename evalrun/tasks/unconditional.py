"""Unconditional generation (DDPMPipeline, DDIMPipeline): ``num_images`` samples, no prompts.

Sample i is seeded from (seed, i, 0), so a run of N samples contains the first N samples of a
larger run with the same seed.
"""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError
from evalrun.tasks.base import Task, positive_int


class Unconditional(Task):
    name = "unconditional"
    knobs = {"steps": "num_inference_steps", "num_images": None}
    more_images = "raise num_images"
    provides = ()  # no prompt, no input image

    def validate(self, cfg: Any) -> None:
        super().validate(cfg)
        if cfg.get("num_images") is None:
            raise ConfigError(f"num_images must be set for unconditional models such as {cfg.model.name!r} "
                              f"(num_images=N or model.default_num_images)")
        positive_int(cfg, "num_images")

    def load_records(self, cfg: Any) -> list[dict[str, Any]]:
        return [{"prompt_id": i, "prompt": "", "category": None, "challenge": None} for i in range(int(cfg.num_images))]

    def images_per_record(self, cfg: Any) -> int:
        return 1

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        return {"batch_size": len(jobs)}

    def grid(self, cfg: Any, jobs: list):
        from evalrun.grid import GridBuilder

        return GridBuilder.plain(len(jobs), int(cfg.grid_max_images))
