"""Text-to-image: prompts in, images out (StableDiffusionPipeline and every pipeline called the same way)."""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError
from evalrun.tasks.base import Task, non_negative_number, positive_int


class TextToImage(Task):
    name = "text2img"
    knobs = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale", "height": "height", "width": "width"}
    prompt_sources = ("inline", "parti", "drawbench", "file")
    prompt_hint = "a prompt set (prompts=doc, parti, drawbench or file)"

    def validate(self, cfg: Any) -> None:
        super().validate(cfg)
        non_negative_number(cfg, "guidance_scale")
        for key in ("height", "width"):
            if positive_int(cfg, key) % 8:
                raise ConfigError(f"{key}={cfg[key]} must be a multiple of 8 (the VAE downsamples by 8)")

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        return {"prompt": [j.record["prompt"] for j in jobs]}
