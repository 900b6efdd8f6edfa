"""A task of your own, worked example: inpainting (README, "Extending evalrun").

Each row of an edit prompt set (``prompts=edit_demo``, or your CSV) gives an input image and the
caption of the wanted result. The task masks a centre square of the image, ``mask_fraction`` of
each side (a model setting), and asks an inpainting pipeline to fill it from the caption.

One module plus one model yaml (``conf/model/tiny_inpaint.yaml`` names this class as
``task: inpaint_task:Inpaint``); nothing in evalrun changes. Like evalrun's own tasks, it imports no
torch at module level, so a bad setting is answered before anything heavy loads.
"""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError
from evalrun.tasks.base import Task, non_negative_number


class Inpaint(Task):
    name = "inpaint"
    # config key -> the pipeline __call__ argument it feeds (None: the task uses it itself).
    # Every knob that is set becomes a result column and part of every image's key.
    knobs = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale", "strength": "strength",
             "height": None, "width": None}
    prompt_sources = ("edit_dataset",)  # reads the same tables as model.task=edit
    prompt_hint = "an edit prompt set with an input image and captions per row (prompts=edit_demo)"
    provides = ("text", "input_image")  # what metrics may ask of its records: edit metrics read the input image

    # 1. Static checks: no model, no torch.
    def validate(self, cfg: Any) -> None:
        super().validate(cfg)
        non_negative_number(cfg, "guidance_scale")
        strength = non_negative_number(cfg, "strength")
        if not 0 < strength <= 1:
            raise ConfigError(f"strength must be in (0, 1], got {strength!r}")
        fraction = cfg.model.get("mask_fraction")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ConfigError(f"model.mask_fraction must be a number in (0, 1], got {fraction!r}")

    # 2. Records are finished before generation: inputs sized to the run, masks drawn. Every scalar of
    #    a record is part of its image's key, so a new mask_fraction never reuses old images.
    def prepare(self, pipeline: Any, records: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        import torch

        from evalrun.tasks.edit_data import load_input

        height, width, fraction = int(cfg.height), int(cfg.width), float(cfg.model.mask_fraction)
        mask = torch.zeros(height, width, dtype=torch.uint8)
        mh, mw = max(1, round(height * fraction)), max(1, round(width * fraction))
        top, left = (height - mh) // 2, (width - mw) // 2
        mask[top:top + mh, left:left + mw] = 255  # white = repaint
        out = []
        for record in records:
            image, original = load_input(record, height, width, cfg.prompts.get("resize") or "stretch")
            out.append({**record, **original, "input_image": image, "mask_image": mask, "mask_fraction": fraction})
        return out

    # 3. One pipeline call per batch of image jobs (evalrun adds the generators, knobs and output type).
    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        from PIL import Image

        return {"prompt": [j.record["output_caption"] for j in jobs],
                "image": [Image.fromarray(j.record["input_image"].permute(1, 2, 0).numpy()) for j in jobs],
                "mask_image": [Image.fromarray(j.record["mask_image"].numpy()) for j in jobs]}

    # 4. Result columns beyond the knobs.
    def extra_columns(self, cfg: Any) -> dict[str, Any]:
        return {**super().extra_columns(cfg), "mask_fraction": float(cfg.model.mask_fraction)}
