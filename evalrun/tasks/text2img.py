"""Text-to-image: prompts in, images out (StableDiffusionPipeline and every pipeline called the same way:
SDXL, SD3, FLUX.1/2, Sana, PixArt-Sigma, Qwen-Image, Z-Image, Lumina 2, Chroma, CogView4).

``guidance_scale`` means what the preset's ``model.guidance`` says (CFG, a distilled guidance
embedding, unused, or 0 for step-distilled models); ``true_cfg_scale`` and ``max_sequence_length``
are refused where the pipeline does not take them. ``height``/``width`` null leave the size to the
pipeline.
"""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError
from evalrun.tasks.base import Task
from evalrun.tasks.guidance import check_guidance_scale
from evalrun.tasks.values import positive_int

# Size multiples beyond the VAE's 8 (VAE factor x patch or 2x2 packing); a size off them is resized
# by FLUX (with a log warning, so the recorded height/width would lie) or raises later in the others
# (PixArt checks only 8, then its patch-2 transformer fails at the first step).
SIZE_MULTIPLE = {"StableDiffusion3Pipeline": 16, "StableDiffusion3PAGPipeline": 16, "FluxPipeline": 16,
                 "FluxKontextPipeline": 16, "Flux2Pipeline": 16, "Flux2KleinPipeline": 16, "ChromaPipeline": 16,
                 "QwenImagePipeline": 16, "QwenImageEditPipeline": 16, "ZImagePipeline": 16, "Lumina2Pipeline": 16,
                 "CogView4Pipeline": 16, "PixArtSigmaPipeline": 16, "PixArtAlphaPipeline": 16,
                 "PixArtSigmaPAGPipeline": 16, "SanaPipeline": 32, "SanaPAGPipeline": 32}


def check_size(cfg: Any, keys=("height", "width")) -> None:
    for key in keys:
        if cfg.get(key) is not None and positive_int(cfg, key) % 8:
            raise ConfigError(f"{key}={cfg[key]} must be a multiple of 8 (the VAE downsamples by 8)")


def check_size_multiple(pipeline_cls: type, cfg: Any) -> None:
    multiple = SIZE_MULTIPLE.get(pipeline_cls.__name__)
    for key in ("height", "width"):
        if multiple and cfg.get(key) is not None and int(cfg[key]) % multiple:
            raise ConfigError(f"{key}={cfg[key]} must be a multiple of {multiple} for {pipeline_cls.__name__} "
                              f"(VAE downsampling x patch size)")


def count_truncation(task: Task, pipeline_cls: type, cfg: Any, prompts: list[str]) -> None:
    """``text_truncation`` for run.json: prompts cut by each tokenizer at the length the pipeline uses."""
    from evalrun.truncation import text_truncation

    task.facts = {**getattr(task, "facts", {}),
                  "text_truncation": text_truncation(cfg.model, pipeline_cls, prompts, cfg.get("max_sequence_length"))}


class TextToImage(Task):
    name = "text2img"
    knobs = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale", "true_cfg_scale": "true_cfg_scale",
             "max_sequence_length": "max_sequence_length", "height": "height", "width": "width"}
    prompt_sources = ("inline", "parti", "drawbench", "file")
    prompt_hint = "a prompt set (prompts=doc, parti, drawbench or file)"

    def validate(self, cfg: Any) -> None:
        super().validate(cfg)
        check_guidance_scale(cfg)
        check_size(cfg)

    def check_pipeline(self, pipeline_cls: type, cfg: Any) -> None:
        super().check_pipeline(pipeline_cls, cfg)
        check_size_multiple(pipeline_cls, cfg)

    def prepare(self, pipeline: Any, records: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        count_truncation(self, pipeline.cls, cfg, [r["prompt"] for r in records])
        return records

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        # A new list per call: ZImagePipeline applies its chat template to the caller's list in place.
        return {"prompt": [j.record["prompt"] for j in jobs]}
