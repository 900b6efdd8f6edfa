"""Where a pipeline is loaded: hub id or local path, cached per process, scheduler swapped.

Hydra's basic launcher (and each joblib worker) runs a sweep's jobs one after another in one
process, so the pipeline loaded by the first job is kept and reused by every later job with
the same checkpoint, revision, dtype and device; only the scheduler changes between them.
"""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Any

import evalrun.tiny as tiny
from evalrun.errors import ConfigError, EvalrunError, load_error

log = logging.getLogger(__name__)

# One pipeline at a time: a sweep over checkpoints must not hold several models in GPU memory.
_CACHE: dict[tuple, Any] = {}


def _diffusers_class(name: str, base_name: str, what: str, limit: int | None = None) -> type:
    """The diffusers class ``name`` if it subclasses ``diffusers.<base_name>``; else an error
    listing the valid names (those ending in ``what``'s class suffix)."""
    import diffusers

    base = getattr(diffusers, base_name)
    obj = getattr(diffusers, str(name), None)
    if isinstance(obj, type) and issubclass(obj, base):
        return obj
    suffix = what.split()[0].capitalize()
    valid = []
    for candidate in dir(diffusers):
        try:
            cls = getattr(diffusers, candidate)
        except Exception:  # optional backends raise on access
            continue
        if isinstance(cls, type) and issubclass(cls, base) and cls is not base and candidate.endswith(suffix):
            valid.append(candidate)
    shown = ", ".join(sorted(valid)[:limit]) + (", ..." if limit and len(valid) > limit else "")
    raise ConfigError(f"unknown {what} {name!r}; valid: {shown}")


def scheduler_class(name: str) -> type:
    """The diffusers scheduler class called ``name``; unknown names list the valid ones."""
    return _diffusers_class(name, "SchedulerMixin", "scheduler class")


def pipeline_class(name: str) -> type:
    """The diffusers pipeline class called ``name`` (``model.pipeline``)."""
    return _diffusers_class(name, "DiffusionPipeline", "pipeline class (model.pipeline)", limit=40)


def _cache_key(model: Any, device, dtype) -> tuple:
    return (model.pipeline, str(model.path), model.revision, model.variant, str(device), str(dtype))


def load_pipeline(model: Any, device, dtype):
    """Load ``model.pipeline`` from ``model.path`` (hub id or local dir) with ``from_pretrained``."""
    import torch

    key = _cache_key(model, device, dtype)
    if key in _CACHE:
        log.info("reusing loaded pipeline %s", model.path)
        return _CACHE[key]
    _CACHE.clear()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    cls = pipeline_class(model.pipeline)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if model.revision is not None:
        kwargs["revision"] = str(model.revision)
    if model.variant is not None:
        kwargs["variant"] = str(model.variant)
    if "safety_checker" in inspect.signature(cls.__init__).parameters:
        # The safety checker blacks out flagged images (many false positives), which silently
        # distorts FID and CLIP score; evaluation loads without it and flags black images instead.
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    source = tiny.resolve(model.path)
    log.info("loading %s from %s (%s, %s)", cls.__name__, model.path, dtype, device)
    try:
        pipe = cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise load_error(cls.__name__, str(model.path), exc, "model.path", local_dir=source,
                         marker="model_index.json") from None
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)  # evalrun shows its own progress over batches
    # Remember the checkpoint's own scheduler: every swap starts from it, so one job's
    # scheduler overrides never leak into the next job that reuses this pipeline.
    pipe._evalrun_default_scheduler = pipe.scheduler
    pipe._evalrun_source = source
    _CACHE[key] = pipe
    return pipe


def model_identity(model: Any) -> dict[str, Any]:
    """What ``model.path`` holds: per-component weights hashes (cached by mtime, so a large checkpoint
    is hashed once per machine) and whether they are evalrun's random (smoke) weights. Read from the
    files, without loading them: a local folder, or the hub snapshot in the local cache."""
    from evalrun.hashing import pretrained_files_identity, stable_hash

    source = tiny.resolve(model.path)
    found = pretrained_files_identity(source, None if Path(source).is_dir() else model.revision)
    files = found.get("files", {})
    components: dict[str, dict[str, str]] = {}
    for rel, digest in files.items():
        components.setdefault(rel.split("/", 1)[0] if "/" in rel else "_root", {})[rel] = digest
    return {"source": str(source), "snapshot": found.get("snapshot"),
            "random_weights": Path(source).is_dir() and tiny.is_random_weights(source),
            "weights_sha256": {c: stable_hash(f, length=64) for c, f in sorted(components.items())},
            "weights_files": files}


def checkpoint_scheduler(model: Any):
    """The checkpoint's own scheduler, from its files alone (no weights load): ``model_index.json``
    names the class, ``scheduler/scheduler_config.json`` holds its config."""
    import diffusers

    source = tiny.resolve(model.path)
    kwargs = {"revision": str(model.revision)} if model.revision is not None else {}
    try:
        index = diffusers.DiffusionPipeline.load_config(source, **kwargs)
        cls = getattr(diffusers, index["scheduler"][1])
        return cls.from_pretrained(source, subfolder="scheduler", **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise load_error(model.pipeline, str(model.path), exc, "model.path", local_dir=source,
                         marker="model_index.json") from None


def build_scheduler(default, scheduler: Any):
    """``scheduler`` (a config-group entry) built with ``from_config`` of the checkpoint's own scheduler.

    Values the checkpoint set explicitly survive a switch, so the class name alone does not say
    what ran: the resolved config returned beside it is stored with the run.
    """
    from omegaconf import OmegaConf

    kwargs = OmegaConf.to_container(scheduler.kwargs, resolve=True) or {}
    if scheduler.class_name is None and not kwargs:
        built = type(default).from_config(default.config)
    else:
        cls = scheduler_class(scheduler.class_name) if scheduler.class_name else type(default)
        try:
            built = cls.from_config(default.config, **kwargs)
        except (TypeError, ValueError) as exc:
            raise EvalrunError(f"scheduler {scheduler.name!r} ({cls.__name__}) rejected kwargs {kwargs}: {exc}") from None
        unused = sorted(set(kwargs) - set(built.config))
        if unused:
            raise EvalrunError(f"scheduler.kwargs {unused} are not options of {cls.__name__}; "
                               f"valid: {', '.join(sorted(k for k in built.config if not k.startswith('_')))}")
    resolved = {k: v for k, v in dict(built.config).items() if not k.startswith("_")}
    return built, {"class": type(built).__name__, **resolved}


def set_scheduler(pipe, scheduler: Any) -> dict[str, Any]:
    """Swap ``scheduler`` into a loaded pipeline (from its checkpoint's own); returns the resolved config."""
    if not hasattr(pipe, "_evalrun_default_scheduler"):
        pipe._evalrun_default_scheduler = pipe.scheduler
    pipe.scheduler, resolved = build_scheduler(pipe._evalrun_default_scheduler, scheduler)
    return resolved


# Schedulers that draw fresh noise inside step(): they need the per-image generators there.
_STOCHASTIC = {"DDPMScheduler", "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
               "DPMSolverSDEScheduler"}


@functools.lru_cache(maxsize=None)
def _pipeline_source(pipe_cls: type) -> str:
    return "".join(inspect.getsource(cls) for cls in pipe_cls.__mro__
                   if cls.__module__.startswith("diffusers.pipelines") and cls.__name__ != "DiffusionPipeline")


def check_scheduler(pipeline_cls: type, scheduler, steps: int) -> None:
    """Refuse scheduler/pipeline pairs that silently sample wrongly.

    Some pipelines (DDPMPipeline, DiTPipeline) never multiply the initial noise by the
    scheduler's ``init_noise_sigma``: with Euler/LMS/Heun/KDPM2 (sigma ~ 157 at 20 steps on
    DDPM's schedule) they produce garbage that FID would score without complaint. DiT also
    calls ``step`` without the generators, so an ancestral/SDE scheduler there would draw
    from the global RNG and images would depend on the batch they share.
    """
    sched = type(scheduler).from_config(scheduler.config)
    sched.set_timesteps(steps)
    source = _pipeline_source(pipeline_cls)
    name = type(scheduler).__name__
    sigma = float(getattr(sched, "init_noise_sigma", 1.0))
    if "init_noise_sigma" not in source and abs(sigma - 1.0) > 1e-6:
        raise EvalrunError(f"{pipeline_cls.__name__} does not scale its starting noise by the scheduler's "
                           f"init_noise_sigma ({sigma:.3g} for {name} at {steps} steps), so it would sample wrongly; "
                           f"use a scheduler with init_noise_sigma 1 (ddim, ddpm, dpm, unipc, deis, pndm)")
    stochastic = name in _STOCHASTIC or "sde" in str(sched.config.get("algorithm_type", ""))
    passes_generator = "extra_step_kwargs" in source or "generator=generator).prev_sample" in source.replace(" ", "") \
        or ", generator=generator" in source.split("scheduler.step(", 1)[-1][:200]
    if stochastic and not passes_generator:
        raise EvalrunError(f"{pipeline_cls.__name__} calls scheduler.step without the per-image generators, so the "
                           f"stochastic {name} would make images depend on their batch; use a deterministic "
                           f"scheduler (ddim, dpm, euler, unipc, deis)")


def clear_cache() -> None:
    _CACHE.clear()
