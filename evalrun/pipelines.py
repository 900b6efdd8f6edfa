"""Where a pipeline is loaded: hub id or local path, cached per process, scheduler swapped.

Hydra's basic launcher runs a sweep's jobs one after another in one process, so the
pipeline loaded by the first job is kept and reused by every later job with the same
checkpoint, revision, dtype and device; only the scheduler changes between them.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from evalrun import tiny
from evalrun.config import pipeline_class, scheduler_class
from evalrun.errors import EvalrunError, load_error

log = logging.getLogger(__name__)

# One pipeline at a time: a sweep over checkpoints must not hold several models in GPU memory.
_CACHE: dict[tuple, Any] = {}


def _cache_key(model: DictConfig, device: torch.device, dtype: torch.dtype) -> tuple:
    return (model.pipeline, str(model.path), model.revision, model.variant, str(device), str(dtype))


def load_pipeline(model: DictConfig, device: torch.device, dtype: torch.dtype):
    """Load ``model.pipeline`` from ``model.path`` (hub id or local dir) with ``from_pretrained``."""
    key = _cache_key(model, device, dtype)
    if key in _CACHE:
        log.info("reusing loaded pipeline %s", model.path)
        return _CACHE[key]
    _CACHE.clear()
    if device.type == "cuda":
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
    except (OSError, ValueError) as exc:
        raise load_error(cls.__name__, str(model.path), exc, "model.path") from None
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)  # evalrun shows its own progress over batches
    # Remember the checkpoint's own scheduler: every swap starts from it, so one job's
    # scheduler overrides never leak into the next job that reuses this pipeline.
    pipe._evalrun_default_scheduler = pipe.scheduler
    _CACHE[key] = pipe
    return pipe


def set_scheduler(pipe, scheduler: DictConfig) -> dict[str, Any]:
    """Swap in ``scheduler`` via ``from_config`` of the checkpoint's own scheduler config.

    Returns the resolved config (class name included) to store with the run: values the
    checkpoint set explicitly survive a switch, so the class name alone does not say what ran.
    """
    default = pipe._evalrun_default_scheduler
    kwargs = OmegaConf.to_container(scheduler.kwargs, resolve=True) or {}
    if scheduler.class_name is None and not kwargs:
        pipe.scheduler = default
    else:
        cls = scheduler_class(scheduler.class_name) if scheduler.class_name else type(default)
        try:
            pipe.scheduler = cls.from_config(default.config, **kwargs)
        except (TypeError, ValueError) as exc:
            raise EvalrunError(f"scheduler {scheduler.name!r} ({cls.__name__}) rejected kwargs {kwargs}: {exc}") from None
        unused = sorted(set(kwargs) - set(pipe.scheduler.config))
        if unused:
            raise EvalrunError(f"scheduler.kwargs {unused} are not options of {cls.__name__}; "
                               f"valid: {', '.join(sorted(k for k in pipe.scheduler.config if not k.startswith('_')))}")
    resolved = {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
    return {"class": type(pipe.scheduler).__name__, **resolved}


# Schedulers that draw fresh noise inside step(): they need the per-image generators there.
_STOCHASTIC = {"DDPMScheduler", "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
               "DPMSolverSDEScheduler"}


@functools.lru_cache(maxsize=None)
def _pipeline_source(pipe_cls: type) -> str:
    return "".join(inspect.getsource(cls) for cls in pipe_cls.__mro__
                   if cls.__module__.startswith("diffusers.pipelines") and cls.__name__ != "DiffusionPipeline")


def check_scheduler(pipe, steps: int) -> None:
    """Refuse scheduler/pipeline pairs that silently sample wrongly.

    Some pipelines (DDPMPipeline, DiTPipeline) never multiply the initial noise by the
    scheduler's ``init_noise_sigma``: with Euler/LMS/Heun/KDPM2 (sigma ~ 157 at 20 steps on
    DDPM's schedule) they produce garbage that FID would score without complaint. DiT also
    calls ``step`` without the generators, so an ancestral/SDE scheduler there would draw
    from the global RNG and images would depend on the batch they share.
    """
    sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
    sched.set_timesteps(steps)
    source = _pipeline_source(type(pipe))
    name = type(pipe.scheduler).__name__
    sigma = float(getattr(sched, "init_noise_sigma", 1.0))
    if "init_noise_sigma" not in source and abs(sigma - 1.0) > 1e-6:
        raise EvalrunError(f"{type(pipe).__name__} does not scale its starting noise by the scheduler's "
                           f"init_noise_sigma ({sigma:.3g} for {name} at {steps} steps), so it would sample wrongly; "
                           f"use a scheduler with init_noise_sigma 1 (ddim, ddpm, dpm, unipc, deis, pndm)")
    stochastic = name in _STOCHASTIC or "sde" in str(sched.config.get("algorithm_type", ""))
    passes_generator = "extra_step_kwargs" in source or "generator=generator).prev_sample" in source.replace(" ", "") \
        or ", generator=generator" in source.split("scheduler.step(", 1)[-1][:200]
    if stochastic and not passes_generator:
        raise EvalrunError(f"{type(pipe).__name__} calls scheduler.step without the per-image generators, so the "
                           f"stochastic {name} would make images depend on their batch; use a deterministic "
                           f"scheduler (ddim, dpm, euler, unipc, deis)")


def clear_cache() -> None:
    _CACHE.clear()
