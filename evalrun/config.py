"""Validate a composed config before anything heavy happens, with errors that name the fix.

Hydra already rejects unknown config-group options (``scheduler=foo`` lists the valid
ones) and unknown keys; this module checks the values inside the groups.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from evalrun.errors import ConfigError

TASKS = ("text2img", "edit", "class2img", "unconditional")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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


def looks_local(path: str) -> bool:
    """Hub ids are ``owner/name``; anything absolute, relative-dotted, ~ or existing is a local path."""
    p = str(path)
    return p.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(p))


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device={device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available here; use device=cpu or device=auto")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    # fp16 on GPU is what users of these checkpoints run; on CPU fp16 is slow and poorly supported.
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not valid; use auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


@contextlib.contextmanager
def full_float32():
    """Run convolutions and matmuls in true float32 on GPUs: the default TF32 on Ampere+
    (cudnn conv) changes features beyond float32 round-off, so a GPU-computed reference
    cache would not match CPU features; results record float32."""
    if not torch.cuda.is_available():
        yield
        return
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first invalid value, before any model or data loads."""
    from evalrun.metrics.registry import METRICS, metric_class

    model = cfg.model
    if model.task not in TASKS:
        raise ConfigError(f"model.task={model.task!r} is not valid; use one of {', '.join(TASKS)}")
    pipeline_class(model.pipeline)
    if model.path in (None, "", "???"):
        raise ConfigError("model.path is empty; set it to a hub id (owner/name) or a local directory")
    if looks_local(model.path) and not os.path.isdir(os.path.expanduser(str(model.path))):
        raise ConfigError(f"model.path={model.path!r} does not exist or is not a directory; point it at a "
                          f"pipeline saved with save_pretrained, or use a hub id such as {model.name}'s default")
    if cfg.scheduler.class_name is not None:
        scheduler_class(cfg.scheduler.class_name)
    if not isinstance(OmegaConf.to_container(cfg.scheduler.kwargs), dict):
        raise ConfigError("scheduler.kwargs must be a mapping of scheduler config overrides")
    for key in ("steps", "num_images_per_prompt", "batch_size"):
        _positive_int(cfg, key)
    seed = cfg.seed
    # `is not None`, not truthiness: seed 0 is a seed (lightning-hydra-template skips it).
    if seed is None or isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if model.task in ("text2img", "edit"):
        for key in ("height", "width"):
            _positive_int(cfg, key)
            if cfg[key] % 8:
                raise ConfigError(f"{key}={cfg[key]} must be a multiple of 8 (the VAE downsamples by 8)")
    guidance = cfg.guidance_scale
    if model.task != "unconditional" and (isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or guidance < 0):
        raise ConfigError(f"guidance_scale must be a number >= 0, got {guidance!r}")
    resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    for name in cfg.get("metrics") or {}:
        if name not in METRICS:
            raise ConfigError(f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}")
        tasks = metric_class(name).tasks
        if tasks is not None and model.task not in tasks:
            raise ConfigError(f"metric {name!r} scores {'/'.join(tasks)} runs, but model {model.name!r} has task "
                              f"{model.task}; drop it from metrics=[...]")


def to_plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
