"""The task protocol: the knobs a task owns, its validation, its records, the pipeline call, its grid.

A run calls a task in this order (see ``run.py``):

1. ``validate(cfg)``: static checks, before anything heavy is imported;
2. ``check_pipeline(cls, cfg)``: the pipeline class is known (not loaded): every knob that is
   set must be an argument of its ``__call__``, or its result column would lie;
3. ``load_records(cfg)``: prompt records, before any model loads;
4. ``prepare(pipeline, records, cfg)``: finish records before generation; ``pipeline.cls`` is the
   pipeline class and ``pipeline.get()`` loads it (class words -> label ids need it; most tasks not);
5. ``pipeline_kwargs(pipe, jobs, params)``: one call per batch of image jobs;
6. ``grid(cfg, jobs)``: a grid builder that keeps only the images it draws.

Importing a task module imports no torch or diffusers.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from evalrun.errors import ConfigError

# Every task-specific knob of any task, with the config key's meaning: a knob that is set but not
# owned by the run's task is refused rather than recorded as if it had an effect.
OPTIONAL_KNOBS = {
    "image_guidance_scale": "InstructPix2Pix-style edits",
    "strength": "img2img-style edits",
    "num_images": "unconditional models",
}
# Result-column order of the knobs (config keys).
KNOB_ORDER = ("steps", "guidance_scale", "image_guidance_scale", "strength", "seed", "height", "width",
              "num_images_per_prompt", "batch_size", "num_images")


def positive_int(cfg: Any, key: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def non_negative_number(cfg: Any, key: str, who: str = "") -> float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{key} must be a number >= 0{who}, got {value!r} (set {key}=... or model.default_{key})")
    return value


def call_parameters(pipeline_cls: type) -> set[str]:
    return set(inspect.signature(pipeline_cls.__call__).parameters)


class Task:
    name: ClassVar[str]
    #: config key -> the pipeline ``__call__`` keyword it feeds (None: used by the task itself, e.g. to
    #: size input images). Knobs that are set become result columns.
    knobs: ClassVar[dict[str, str | None]] = {"steps": "num_inference_steps"}
    #: ``prompts.source`` values this task reads (empty: it reads no prompt set).
    prompt_sources: ClassVar[tuple[str, ...]] = ()
    #: a hint naming prompt sets that fit, for the error when another is given
    prompt_hint: ClassVar[str] = ""
    #: False for tasks that read existing images (``read_image``) instead of calling a pipeline
    generates: ClassVar[bool] = True

    # ------------------------------------------------------------------ validation
    def validate(self, cfg: Any) -> None:
        """Static checks of the task's knobs and prompt set; no model, no heavy import."""
        positive_int(cfg, "steps")
        for key, meaning in OPTIONAL_KNOBS.items():
            if cfg.get(key) is not None and key not in self.knobs:
                raise ConfigError(f"{key}={cfg.get(key)!r} has no effect on model {cfg.model.name!r} (task {self.name}; "
                                  f"{key} is for {meaning}); remove it")
        if self.prompt_sources:
            source = cfg.prompts.get("source") if cfg.get("prompts") is not None else None
            if source not in self.prompt_sources:
                raise ConfigError(f"model {cfg.model.name!r} (task {self.name}) reads {self.prompt_hint}, not "
                                  f"prompts={cfg.prompts.get('name')!r}")

    def check_pipeline(self, pipeline_cls: type, cfg: Any) -> None:
        """Every knob that is set must reach the pipeline: refuse one its ``__call__`` does not take."""
        params = call_parameters(pipeline_cls)
        for key, kwarg in self.knobs.items():
            if kwarg is not None and cfg.get(key) is not None and kwarg not in params:
                raise ConfigError(f"{key}={cfg.get(key)!r} has no effect on {pipeline_cls.__name__} (its __call__ takes "
                                  f"no {kwarg}); remove it")

    # ------------------------------------------------------------------ records and calls
    def load_records(self, cfg: Any) -> list[dict[str, Any]]:
        from evalrun.prompts import load_prompts

        return load_prompts(cfg.prompts)

    def images_per_record(self, cfg: Any) -> int:
        return int(cfg.num_images_per_prompt)

    def prepare(self, pipeline: Any, records: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        """Finish records before generation (default: nothing to do); ``pipeline.get()`` loads the pipeline."""
        return records

    def params(self, cfg: Any) -> dict[str, Any]:
        """The knobs that are set, as plain values (result columns and call arguments)."""
        from evalrun.config import to_plain

        return {k: to_plain(cfg[k]) for k in self.knobs if cfg.get(k) is not None}

    def column_keys(self, cfg: Any) -> list[str]:
        """Config keys that become result columns, in a stable order."""
        keys = set(self.knobs) | {"seed", "batch_size"}
        if "num_images" not in self.knobs:
            keys.add("num_images_per_prompt")
        ordered = [k for k in KNOB_ORDER if k in keys]
        return ordered + sorted(keys - set(ordered))

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        """What the pipeline generates from (prompts, labels, images) for a batch of jobs."""
        raise NotImplementedError

    def pipeline_kwargs(self, pipe: Any, jobs: list, params: dict[str, Any]) -> dict[str, Any]:
        kwargs = {kwarg: params[key] for key, kwarg in self.knobs.items() if kwarg is not None and key in params}
        return {**self.inputs(pipe, jobs), **kwargs}

    def grid(self, cfg: Any, jobs: list):
        """A grid builder: prompts as labelled rows, images per prompt as columns."""
        from evalrun.grid import GridBuilder

        return GridBuilder.by_prompt(jobs, int(cfg.grid_max_images), label=lambda rec: [str(rec.get("prompt") or "")])
