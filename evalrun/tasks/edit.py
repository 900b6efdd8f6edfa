"""Image editing: an input image and an instruction or caption in, an edit out.

The style is read from the pipeline's ``__call__`` before it loads: ``pix2pix`` (takes
``image_guidance_scale``: InstructPix2Pix), ``img2img`` (takes ``strength``), or ``instruction``
(takes ``image`` and neither: FLUX.1 Kontext, Qwen-Image-Edit, which condition on the input image's
tokens). The knob a style uses must be set; one it ignores must not be, or its result column would
claim an effect. Instruction pipelines get the run's ``height``/``width`` as the output size (and
FLUX.1 Kontext ``max_area=height*width``, else it scales the output to its 1 MP default).
"""

from __future__ import annotations

import logging
from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.tasks.base import Task
from evalrun.tasks.guidance import check_guidance_scale
from evalrun.tasks.values import call_parameters, non_negative_number
from evalrun.tasks.text2img import check_size, check_size_multiple, count_truncation

log = logging.getLogger(__name__)
RECORD_TEXTS = ("prompt", "input_caption", "output_caption")  # what model.prompt_key may name


def edit_style(pipeline_cls: type) -> str:
    """``pix2pix`` (takes image_guidance_scale), ``img2img`` (takes strength) or ``instruction`` (takes
    the image and neither), from the call signature."""
    params = call_parameters(pipeline_cls)
    if "image" not in params:
        raise ConfigError(f"{pipeline_cls.__name__} takes no input image: it is not an editing pipeline (model.task=edit)")
    if "image_guidance_scale" in params:
        return "pix2pix"
    if "strength" in params:
        return "img2img"
    return "instruction"


def takes_size(pipeline_cls: type) -> bool:
    """Whether the pipeline's call takes the output size (else it keeps the input image's)."""
    return {"height", "width"} <= set(call_parameters(pipeline_cls))


def check_guidance_applies(pipeline_cls: type, cfg: Any) -> None:
    """InstructPix2Pix guides only when guidance_scale > 1 and image_guidance_scale >= 1 (its own
    ``do_classifier_free_guidance``, asked here): below that neither scale has any effect, and runs that
    differ in them would be the same images under several names."""
    from types import SimpleNamespace

    rule = getattr(pipeline_cls, "do_classifier_free_guidance", None)
    text, image = float(cfg.guidance_scale), float(cfg.image_guidance_scale)
    try:
        guides = rule.fget(SimpleNamespace(guidance_scale=text, image_guidance_scale=image))
    except Exception:  # noqa: BLE001 - another rule than the one known here: let the pipeline decide
        return
    if guides:
        return
    if image < 1:  # whatever guidance_scale is: runs at 0.5 and at 1.5 would be the same images
        raise ConfigError(f"image_guidance_scale={cfg.image_guidance_scale} below 1 turns classifier-free guidance off "
                          f"in {pipeline_cls.__name__} (it guides only when image_guidance_scale >= 1), so neither "
                          f"scale would take effect; use image_guidance_scale >= 1")
    log.warning("guidance_scale=%s: %s samples without guidance, so image_guidance_scale=%s has no effect",
                cfg.guidance_scale, pipeline_cls.__name__, cfg.image_guidance_scale)


class Edit(Task):
    name = "edit"
    # height/width size the input images (pipelines whose call takes no size keep the image's; the others
    # get it passed, see pipeline_kwargs).
    knobs = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale", "true_cfg_scale": "true_cfg_scale",
             "image_guidance_scale": "image_guidance_scale", "strength": "strength",
             "max_sequence_length": "max_sequence_length", "height": None, "width": None}
    prompt_sources = ("edit_dataset",)
    provides = ("text", "input_image")
    prompt_hint = ("an edit prompt set with an input image and captions per row (prompts=instructpix2pix_demo "
                   "or prompts=edit_demo)")

    def validate(self, cfg: Any) -> None:
        from evalrun.tasks.edit_data import RESIZE_MODES

        super().validate(cfg)
        check_guidance_scale(cfg)
        for key in ("height", "width"):
            if cfg.get(key) is None:
                raise ConfigError(f"{key} must be set for edits (input images are resized to height x width)")
        check_size(cfg)
        prompt_key = cfg.model.get("prompt_key")
        if prompt_key is not None and prompt_key not in RECORD_TEXTS:
            raise ConfigError(f"model.prompt_key={prompt_key!r} is not valid; use one of {', '.join(RECORD_TEXTS)}")
        mode = cfg.prompts.get("resize") or "stretch"
        if mode not in RESIZE_MODES:
            raise ConfigError(f"prompts.resize={mode!r} is not valid; use one of {', '.join(RESIZE_MODES)}")
        # Ranges that need no pipeline class: answered before torch is imported (which knob the pipeline
        # uses is checked with its class, in check_pipeline).
        for key in ("strength", "image_guidance_scale"):
            if cfg.get(key) is not None:
                value = non_negative_number(cfg, key)
                if key == "strength" and not 0 < value <= 1:
                    raise ConfigError(f"strength must be in (0, 1], got {value!r}")

    def check_pipeline(self, pipeline_cls: type, cfg: Any) -> None:
        """The knob the pipeline uses must be set; one it ignores must not be, or its result column would lie."""
        style = edit_style(pipeline_cls)
        used = {"pix2pix": "image_guidance_scale", "img2img": "strength", "instruction": None}[style]
        if used is not None:  # its range was checked with the config (validate); here: that it is set
            non_negative_number(cfg, used, f" for {pipeline_cls.__name__}")
        for unused in {"image_guidance_scale", "strength"} - {used}:
            if cfg.get(unused) is not None:
                raise ConfigError(f"{unused}={cfg.get(unused)!r} has no effect on {pipeline_cls.__name__}; remove it")
        super().check_pipeline(pipeline_cls, cfg)
        if takes_size(pipeline_cls):
            check_size_multiple(pipeline_cls, cfg)
        if style == "pix2pix":
            check_guidance_applies(pipeline_cls, cfg)

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
        # Pix2pix and instruction models follow the instruction; img2img users describe the wanted result.
        prompt_key = self.prompt_key = cfg.model.get("prompt_key") or ("output_caption" if style == "img2img" else "prompt")
        mode = cfg.prompts.get("resize") or "stretch"
        height, width = int(cfg.height), int(cfg.width)
        out = []
        for record in records:
            image, original = load_input(record, height, width, mode)
            out.append({**record, **original, "pipeline_prompt": record[prompt_key], "input_image": image})
        log.info("edit inputs: %d images sized to %dx%d (%s); pipeline prompt: %s", len(out), width, height, mode, prompt_key)
        count_truncation(self, pipeline.cls, cfg, [r["pipeline_prompt"] for r in out])
        return out

    def extra_columns(self, cfg: Any) -> dict[str, Any]:
        """Besides the base columns: how the inputs were sized and which text the pipeline got (both change
        the images, so runs that differ in them are different configurations, never seeds of one)."""
        cols = super().extra_columns(cfg)
        cols["input_resize"] = str(cfg.prompts.get("resize") or "stretch")
        if getattr(self, "prompt_key", None):
            cols["prompt_key"] = self.prompt_key
        return cols

    def pipeline_kwargs(self, pipe: Any, jobs: list, params: dict[str, Any]) -> dict[str, Any]:
        kwargs = super().pipeline_kwargs(pipe, jobs, params)
        # The inputs are sized to the run's height x width; a pipeline that takes a size and is not given one
        # makes its default (FluxImg2ImgPipeline: 1024 px, resizing the input up to it).
        if takes_size(type(pipe)) and jobs:
            height, width = (int(x) for x in jobs[0].record["input_image"].shape[1:])
            kwargs.update(height=height, width=width)
            if edit_style(type(pipe)) == "instruction" and "max_area" in call_parameters(type(pipe)) \
                    and "max_area" not in kwargs:
                kwargs["max_area"] = height * width
        return kwargs

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        from PIL import Image

        if any("input_image" not in j.record for j in jobs):
            raise EvalrunError("edit jobs have no input image: the task's prepare step did not run")
        # One image per prompt, always: QwenImageEditPipeline cannot share one image among several prompts.
        return {"prompt": [j.record["pipeline_prompt"] for j in jobs],
                "image": [Image.fromarray(j.record["input_image"].permute(1, 2, 0).numpy()) for j in jobs]}

    def grid(self, cfg: Any, jobs: list):
        """One row per input: input | edited image(s), with the instruction and both captions."""
        from evalrun.grid import GridBuilder, hwc

        def label(rec: dict) -> list[str]:
            return [str(rec.get("prompt")), f"input: {rec.get('input_caption')}", f"output: {rec.get('output_caption')}"]

        return GridBuilder.by_prompt(jobs, int(cfg.grid_max_images), label=label,
                                     lead=lambda rec: hwc(rec["input_image"]))
