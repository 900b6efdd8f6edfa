"""Image editing (InstructPix2Pix, img2img): an input image and an instruction or caption in, an edit out.

Which knob drives the edit is read from the pipeline's ``__call__`` before it loads:
``image_guidance_scale`` (InstructPix2Pix style) or ``strength`` (img2img style). The one it
uses must be set; the other must not be, or its result column would claim an effect.
"""

from __future__ import annotations

import logging
from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.tasks.base import Task, call_parameters, non_negative_number, positive_int

log = logging.getLogger(__name__)
RECORD_TEXTS = ("prompt", "input_caption", "output_caption")  # what model.prompt_key may name


def edit_style(pipeline_cls: type) -> str:
    """``pix2pix`` (takes image_guidance_scale) or ``img2img`` (takes strength), from the call signature."""
    params = call_parameters(pipeline_cls)
    if "image" not in params:
        raise ConfigError(f"{pipeline_cls.__name__} takes no input image: it is not an editing pipeline (model.task=edit)")
    if "image_guidance_scale" in params:
        return "pix2pix"
    if "strength" in params:
        return "img2img"
    raise ConfigError(f"{pipeline_cls.__name__} has neither image_guidance_scale nor strength; evalrun's edit task "
                      f"supports InstructPix2Pix- and img2img-style pipelines")


class Edit(Task):
    name = "edit"
    # height/width size the input images; the pipelines take the size from the image.
    knobs = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale",
             "image_guidance_scale": "image_guidance_scale", "strength": "strength", "height": None, "width": None}
    prompt_sources = ("edit_dataset",)
    prompt_hint = ("an edit prompt set with an input image and captions per row (prompts=instructpix2pix_demo "
                   "or prompts=edit_demo)")

    def validate(self, cfg: Any) -> None:
        from evalrun.tasks.edit_data import RESIZE_MODES

        super().validate(cfg)
        non_negative_number(cfg, "guidance_scale")
        for key in ("height", "width"):
            if positive_int(cfg, key) % 8:
                raise ConfigError(f"{key}={cfg[key]} must be a multiple of 8 (the VAE downsamples by 8)")
        prompt_key = cfg.model.get("prompt_key")
        if prompt_key is not None and prompt_key not in RECORD_TEXTS:
            raise ConfigError(f"model.prompt_key={prompt_key!r} is not valid; use one of {', '.join(RECORD_TEXTS)}")
        mode = cfg.prompts.get("resize") or "stretch"
        if mode not in RESIZE_MODES:
            raise ConfigError(f"prompts.resize={mode!r} is not valid; use one of {', '.join(RESIZE_MODES)}")

    def check_pipeline(self, pipeline_cls: type, cfg: Any) -> None:
        """The knob the pipeline uses must be set; one it ignores must not be, or its result column would lie."""
        style = edit_style(pipeline_cls)
        used, unused = ("image_guidance_scale", "strength") if style == "pix2pix" else ("strength", "image_guidance_scale")
        value = non_negative_number(cfg, used, f" for {pipeline_cls.__name__}")
        if used == "strength" and not 0 < value <= 1:
            raise ConfigError(f"strength must be in (0, 1], got {value!r}")
        if cfg.get(unused) is not None:
            raise ConfigError(f"{unused}={cfg.get(unused)!r} has no effect on {pipeline_cls.__name__}; remove it")
        super().check_pipeline(pipeline_cls, cfg)

    def load_records(self, cfg: Any) -> list[dict[str, Any]]:
        records = super().load_records(cfg)
        if not records or "input_path" not in records[0]:
            raise ConfigError(f"model.task=edit needs an edit prompt set (an input image and captions per row), not "
                              f"prompts={cfg.prompts.get('name')!r}; use prompts=instructpix2pix_demo or prompts=edit_demo")
        return records

    def prepare(self, pipeline: Any, records: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        """Pick the pipeline's prompt, load and size the inputs."""
        from evalrun.tasks.edit_data import load_input

        style = edit_style(pipeline.cls)
        # Pix2pix follows the instruction; img2img users describe the wanted result (the output caption).
        prompt_key = cfg.model.get("prompt_key") or ("prompt" if style == "pix2pix" else "output_caption")
        mode = cfg.prompts.get("resize") or "stretch"
        height, width = int(cfg.height), int(cfg.width)
        out = []
        for record in records:
            image, original = load_input(record, height, width, mode)
            out.append({**record, **original, "pipeline_prompt": record[prompt_key], "input_image": image})
        log.info("edit inputs: %d images sized to %dx%d (%s); pipeline prompt: %s", len(out), width, height, mode, prompt_key)
        return out

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        from PIL import Image

        if any("input_image" not in j.record for j in jobs):
            raise EvalrunError("edit jobs have no input image: the task's prepare step did not run")
        return {"prompt": [j.record["pipeline_prompt"] for j in jobs],
                "image": [Image.fromarray(j.record["input_image"].permute(1, 2, 0).numpy()) for j in jobs]}

    def grid(self, cfg: Any, jobs: list):
        """One row per input: input | edited image(s), with the instruction and both captions."""
        from evalrun.grid import GridBuilder, hwc

        def label(rec: dict) -> list[str]:
            return [str(rec.get("prompt")), f"input: {rec.get('input_caption')}", f"output: {rec.get('output_caption')}"]

        return GridBuilder.by_prompt(jobs, int(cfg.grid_max_images), label=label,
                                     lead=lambda rec: hwc(rec["input_image"]))
