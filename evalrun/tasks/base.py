"""The task protocol: the knobs a task owns, its validation, its records, the pipeline call, its grid.

A run calls a task in this order (see ``run.py``):

1. ``validate(cfg)``: static checks, before anything heavy is imported;
2. ``check_pipeline(cls, cfg)``: the pipeline class is known (not loaded): every knob that is
   set must be an argument of its ``__call__``, or its result column would lie;
3. ``load_records(cfg)``: prompt records, before any model loads;
4. ``prepare(pipeline, records, cfg)``: finish records before generation; ``pipeline.cls`` is the
   pipeline class and ``pipeline.get()`` loads it (class words -> label ids need it; most tasks not);
5. ``pipeline_kwargs(pipe, jobs, params)``: one call per batch of image jobs;
6. ``grid(cfg, jobs)``: a grid builder that keeps only the images it draws;
7. ``extra_columns(cfg)`` and ``provenance()``: result columns beyond the knobs (negative prompt,
   guidance meaning, fixed call kwargs) and facts for ``run.json`` (prompt truncation per tokenizer).

Beyond the knobs, every task passes ``prompts.negative_prompt`` (when set; it is part of each
record, so of each image's key) and the preset's fixed ``model.call_kwargs`` (part of the
generation key); both are refused where the pipeline's ``__call__`` does not take them.

Importing a task module imports no torch or diffusers.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from typing import Any, ClassVar

from evalrun.errors import ConfigError
from evalrun.tasks.guidance import check_guidance_reaches, check_negative_prompt_acts
from evalrun.tasks.values import (call_default, call_parameters, negative_prompt, non_negative_number, positive_int,
                                  protocol_sets)

# Every task-specific knob of any task, with the config key's meaning: a knob that is set but not
# owned by the run's task is refused rather than recorded as if it had an effect.
OPTIONAL_KNOBS = {
    "image_guidance_scale": "InstructPix2Pix-style edits",
    "strength": "img2img-style edits",
    "num_images": "unconditional models",
    "true_cfg_scale": "pipelines with true classifier-free guidance beside a distilled or unused guidance_scale "
                      "(FLUX.1, Qwen-Image)",
    "max_sequence_length": "pipelines with T5/LLM text encoders",
}
# Result-column order of the knobs (config keys).
KNOB_ORDER = ("steps", "guidance_scale", "true_cfg_scale", "image_guidance_scale", "strength", "max_sequence_length",
              "seed", "height", "width", "num_images_per_prompt", "batch_size", "num_images")
# Memory options (applied when the pipeline loads): result columns only when not at these defaults.
MEMORY_DEFAULTS = {"offload": "none", "vae_tiling": False, "vae_slicing": False}
# Pipelines whose images depend on their batch mates (diffusers 0.42), refused with batch_size > 1.
BATCH_DEPENDENT = {
    "CogView4Pipeline": "pads the prompts of one call to the longest and encodes them without an attention mask, "
                        "so an image depends on the other prompts in its batch",
}
# Pipeline call arguments that a task or knob sets: not settable through model.call_kwargs.
RESERVED_KWARGS = {"prompt", "negative_prompt", "image", "generator", "output_type", "num_images_per_prompt",
                   "class_labels", "batch_size", "latents", "prompt_embeds", "return_dict"}


def call_kwargs(cfg: Any) -> dict[str, Any]:
    """The preset's fixed extra ``__call__`` arguments (``model.call_kwargs``), as plain values."""
    from evalrun.plain import to_plain

    value = to_plain(cfg.model.get("call_kwargs")) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"model.call_kwargs must be a mapping of pipeline call arguments, got {value!r}")
    return value


@functools.lru_cache(maxsize=None)  # a sweep asks once per job; the source does not change
def sequence_limit(pipeline_cls: type) -> int | None:
    """The largest max_sequence_length the pipeline's ``check_inputs`` accepts (FLUX, SD3: 512), read from its
    source so that the refusal comes before the weights load, not at the first batch."""
    check = getattr(pipeline_cls, "check_inputs", None)
    try:
        found = re.search(r"max_sequence_length\s*>\s*(\d+)", inspect.getsource(check)) if check else None
    except (OSError, TypeError):
        return None
    return int(found.group(1)) if found else None


class Task:
    name: ClassVar[str]
    #: config key -> the pipeline ``__call__`` keyword it feeds (None: used by the task itself, e.g. to
    #: size input images). Knobs that are set become result columns.
    knobs: ClassVar[dict[str, str | None]] = {"steps": "num_inference_steps"}
    #: knobs that only say how many images a run makes (not part of each image's key: a larger run reuses them)
    count_knobs: ClassVar[tuple[str, ...]] = ()
    #: ``prompts.source`` values this task reads (empty: it reads no prompt set).
    prompt_sources: ClassVar[tuple[str, ...]] = ()
    #: a hint naming prompt sets that fit, for the error when another is given
    prompt_hint: ClassVar[str] = ""
    #: False for tasks that read existing images (``read_image``) instead of calling a pipeline
    generates: ClassVar[bool] = True
    #: How to give a set metric more images (the error when a run has too few for it).
    more_images: ClassVar[str] = "raise num_images_per_prompt or prompts.limit"
    #: What each record carries for metrics (``Metric.needs``): ``text``, ``input_image``.
    provides: ClassVar[tuple[str, ...]] = ("text",)

    # ------------------------------------------------------------------ validation
    def validate(self, cfg: Any) -> None:
        """Static checks of the task's knobs and prompt set; no model, no heavy import."""
        positive_int(cfg, "steps")
        for key, meaning in OPTIONAL_KNOBS.items():
            if cfg.get(key) is not None and key not in self.knobs:
                raise ConfigError(f"{key}={cfg.get(key)!r} has no effect on model {cfg.model.name!r} (task {self.name}; "
                                  f"{key} is for {meaning}); remove it")
        # Set by default only where the task uses them: set by hand on a task that does not, they would be
        # recorded nowhere, and the summary would average runs that differ in them as seeds.
        for key, why in (("height", "it samples at the size of its weights"), ("width", "it samples at the size of "
                         "its weights"), ("guidance_scale", "its pipeline takes no guidance")):
            if cfg.get(key) is not None and key not in self.knobs:
                raise ConfigError(f"{key}={cfg.get(key)!r} has no effect on model {cfg.model.name!r} (task "
                                  f"{self.name}: {why}); remove it")
        if "num_images" in self.knobs and cfg.get("num_images_per_prompt") not in (  # a protocol's per-class count too
                None, 1, protocol_sets(cfg).get("num_images_per_prompt")):
            raise ConfigError(f"num_images_per_prompt={cfg.get('num_images_per_prompt')!r} has no effect on model "
                              f"{cfg.model.name!r} (task {self.name} draws num_images samples); set num_images instead")
        if cfg.get("true_cfg_scale") is not None:
            non_negative_number(cfg, "true_cfg_scale")
        if cfg.get("max_sequence_length") is not None:
            positive_int(cfg, "max_sequence_length", " (the text encoder's token limit); set max_sequence_length=N, "
                                                     "or null for the pipeline's default")
        if self.prompt_sources:
            source = cfg.prompts.get("source") if cfg.get("prompts") is not None else None
            if source not in self.prompt_sources:
                protocol = (cfg.get("protocol") or {}).get("name")
                if protocol not in (None, "none") and protocol_sets(cfg).get("prompts"):  # its choice, not the user's
                    raise ConfigError(f"protocol={protocol} selects prompts={cfg.prompts.get('name')!r}, which model "
                                      f"{cfg.model.name!r} (task {self.name}) does not read (it reads "
                                      f"{self.prompt_hint}); use protocol=none, or a model the protocol evaluates")
                raise ConfigError(f"model {cfg.model.name!r} (task {self.name}) reads {self.prompt_hint}, not "
                                  f"prompts={cfg.prompts.get('name')!r}")

    def check_pipeline(self, pipeline_cls: type, cfg: Any) -> None:
        """Every knob that is set must reach the pipeline: refuse one its ``__call__`` does not take."""
        params, name = call_parameters(pipeline_cls), pipeline_cls.__name__
        self.pipeline_class_name = name
        for key, kwarg in self.knobs.items():
            if kwarg is not None and cfg.get(key) is not None and kwarg not in params:
                raise ConfigError(f"{key}={cfg.get(key)!r} has no effect on {name} (its __call__ takes "
                                  f"no {kwarg}); remove it")
        negative = negative_prompt(cfg)
        if negative is not None and "negative_prompt" not in params:
            raise ConfigError(f"prompts.negative_prompt={negative!r} has no effect on {name} (its __call__ takes no "
                              f"negative_prompt); remove it")
        if "true_cfg_scale" in params:  # FLUX.1, Kontext, Qwen-Image: true CFG runs only with a negative prompt
            true_cfg = cfg.get("true_cfg_scale") if cfg.get("true_cfg_scale") is not None \
                else call_default(pipeline_cls, "true_cfg_scale")
            if true_cfg is not None and true_cfg > 1 and negative is None:
                raise ConfigError(f"true_cfg_scale={true_cfg} has no effect on {name} without a negative prompt (it "
                                  f"runs true CFG only with one); set prompts.negative_prompt (\" \" for an empty one)")
            if negative is not None and not (true_cfg is not None and true_cfg > 1):
                raise ConfigError(f"prompts.negative_prompt={negative!r} has no effect on {name} unless "
                                  f"true_cfg_scale > 1; set true_cfg_scale or remove the negative prompt")
        elif "guidance_scale" in self.knobs:
            check_negative_prompt_acts(pipeline_cls, cfg)
        if "guidance_scale" in self.knobs:
            check_guidance_reaches(pipeline_cls, cfg)
        for key in call_kwargs(cfg):
            if key in RESERVED_KWARGS or key in self.knobs.values():
                raise ConfigError(f"model.call_kwargs.{key}: evalrun sets {key} itself (a knob or the task's "
                                  f"inputs); remove it from model.call_kwargs")
            if key not in params:
                raise ConfigError(f"model.call_kwargs.{key} is not an argument of {name}.__call__; remove it")
        if name in BATCH_DEPENDENT and (cfg.batch_size == "auto" or int(cfg.batch_size) > 1):
            raise ConfigError(f"{name} {BATCH_DEPENDENT[name]}; use batch_size=1 (batch_size={cfg.batch_size})")
        limit = sequence_limit(pipeline_cls)
        if limit is not None and cfg.get("max_sequence_length") is not None and cfg.max_sequence_length > limit:
            raise ConfigError(f"max_sequence_length={cfg.max_sequence_length} is more than {name} takes (at most "
                              f"{limit}); use max_sequence_length <= {limit}")

    # ------------------------------------------------------------------ records and calls
    def load_records(self, cfg: Any) -> list[dict[str, Any]]:
        """The prompt set's records; a negative prompt becomes part of each (so of each image's key)."""
        from evalrun.prompts import load_prompts

        records = load_prompts(cfg.prompts)
        negative = negative_prompt(cfg)
        return records if negative is None else [{**r, "negative_prompt": negative} for r in records]

    def images_per_record(self, cfg: Any) -> int:
        return int(cfg.num_images_per_prompt)

    def jobs(self, records: list[dict[str, Any]], per_record: int, seed: int) -> list:
        """One job per image: ``per_record`` images of each record, each with its own generator seed."""
        from evalrun.jobs import image_jobs

        return image_jobs(records, per_record, seed)

    def prepare(self, pipeline: Any, records: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        """Finish records before generation (default: nothing to do); ``pipeline.get()`` loads the pipeline."""
        return records

    def params(self, cfg: Any) -> dict[str, Any]:
        """The knobs that are set, as plain values (result columns and call arguments)."""
        from evalrun.plain import to_plain

        params = {k: to_plain(cfg[k]) for k in self.knobs if cfg.get(k) is not None}
        fixed = call_kwargs(cfg)
        return {**params, "call_kwargs": fixed} if fixed else params

    def column_keys(self, cfg: Any) -> list[str]:
        """Config keys that become result columns, in a stable order (memory options only when set)."""
        keys = set(self.knobs) | {"seed", "batch_size"}
        if "num_images" not in self.knobs:
            keys.add("num_images_per_prompt")
        ordered = [k for k in KNOB_ORDER if k in keys]
        memory = [k for k, default in MEMORY_DEFAULTS.items() if cfg.get(k, default) != default]
        return ordered + sorted(keys - set(ordered)) + memory

    def extra_columns(self, cfg: Any) -> dict[str, Any]:
        """Result columns that are not top-level knobs: what guidance_scale means, the negative prompt,
        fixed call kwargs, and the concrete class an ``AutoPipelineFor*`` resolved to."""
        cols: dict[str, Any] = {}
        if cfg.model.get("guidance"):
            cols["guidance"] = str(cfg.model.guidance)
        if negative_prompt(cfg) is not None:
            cols["negative_prompt"] = negative_prompt(cfg)
        if call_kwargs(cfg):
            cols["call_kwargs"] = json.dumps(call_kwargs(cfg), sort_keys=True, default=str)
        resolved = getattr(self, "pipeline_class_name", None)
        if resolved and resolved != str(cfg.model.pipeline):
            cols["pipeline_class"] = resolved
        return cols

    def provenance(self) -> dict[str, Any]:
        """Facts for run.json's provenance found while preparing (e.g. ``text_truncation``)."""
        return dict(getattr(self, "facts", {}))

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        """What the pipeline generates from (prompts, labels, images) for a batch of jobs."""
        raise NotImplementedError

    def pipeline_kwargs(self, pipe: Any, jobs: list, params: dict[str, Any]) -> dict[str, Any]:
        kwargs = {kwarg: params[key] for key, kwarg in self.knobs.items() if kwarg is not None and key in params}
        if jobs and "negative_prompt" in jobs[0].record:  # a fresh list per call: Z-Image rewrites its lists in place
            kwargs["negative_prompt"] = [j.record["negative_prompt"] for j in jobs]
        return {**self.inputs(pipe, jobs), **kwargs, **params.get("call_kwargs", {})}

    def grid(self, cfg: Any, jobs: list):
        """A grid builder: prompts as labelled rows, images per prompt as columns."""
        from evalrun.grid import GridBuilder

        return GridBuilder.by_prompt(jobs, int(cfg.grid_max_images), label=lambda rec: [str(rec.get("prompt") or "")])
