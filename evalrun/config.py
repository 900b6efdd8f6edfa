"""Validate a composed config in one place, before anything heavy happens, with errors that name the fix.

Two phases, both before any model loads:

- :func:`validate` checks every value that needs no library beyond Hydra: the model's path and
  task, the task's knobs and prompt set, seeds and counts, device and dtype spellings, every
  metric's settings and its fit with the task. A mistyped value is answered before torch or
  diffusers are imported (``bench/startup.py`` measures it).
- :func:`validate_classes` imports diffusers to check the pipeline and scheduler class names and
  that every knob that is set reaches the pipeline's ``__call__``.

Hydra already rejects unknown config-group options (``scheduler=foo`` lists the valid ones) and
unknown keys; ``evalrun.override_keys`` answers a misspelt key in one line, and refuses the
``+key=value`` Hydra suggests where nothing would read the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError, true_or_false
from evalrun.metrics.settings import MAX_SEED
from evalrun.plain import to_plain
from evalrun.scheduler_fits import FAMILIES, fitting_options, mismatch

DTYPES = ("float32", "float16", "bfloat16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
OFFLOAD = ("none", "model", "sequential")


def looks_local(path: str) -> bool:
    """Hub ids are ``owner/name``; anything absolute, relative-dotted, ~ or existing is a local path."""
    p = str(path)
    return p.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(p))


@dataclass
class Plan:
    """What validation found: the task and the metric objects (settings checked, nothing loaded)."""

    task: Any
    metrics: dict[str, Any] = field(default_factory=dict)


def _check_model(model: Any) -> None:
    import evalrun.tiny as tiny

    if model.get("path") in (None, "", "???"):  # get: an unset (???) value reads as None
        raise ConfigError("model.path is empty; set it to a hub id (owner/name) or a local directory")
    if tiny.is_tiny(model.path) or not looks_local(model.path):
        return
    path = Path(os.path.expanduser(str(model.path)))
    if not path.is_dir():
        raise ConfigError(f"model.path={model.path!r} does not exist or is not a directory; point it at a "
                          f"pipeline saved with save_pretrained, or use a hub id such as {model.name}'s default")
    if not (path / "model_index.json").exists():
        raise ConfigError(f"model.path={model.path!r} has no model_index.json, so it is not a saved pipeline; point it at "
                          f"the folder save_pretrained wrote (the one holding model_index.json)")
    if model.get("revision") is not None:
        raise ConfigError(f"model.revision={model.revision!r} applies to hub ids, but model.path={model.path!r} is a "
                          f"local folder (its files are what loads); remove model.revision")


def _check_runtime(cfg: Any) -> None:
    from evalrun.acceleration import validate as validate_acceleration

    validate_acceleration(cfg)
    for key, low in (("num_images_per_prompt", 1), ("grid_max_images", 1)):  # a grid of -1 dropped the last image
        value = cfg.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    seed = cfg.seed
    # `is not None`, not truthiness: seed 0 is a seed (lightning-hydra-template skips it).
    if seed is None or isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or seed > MAX_SEED:
        # The bound: metrics seed numpy's RandomState with the run's seed (KID subsets, IS splits).
        raise ConfigError(f"seed must be a non-negative integer (at most 2**32 - 1), got {seed!r}")
    if not _DEVICE.match(str(cfg.device)):
        raise ConfigError(f"device={cfg.device!r} is not a torch device; use auto, cpu, cuda or cuda:N")
    if cfg.dtype != "auto" and cfg.dtype not in DTYPES:
        raise ConfigError(f"dtype={cfg.dtype!r} is not valid; use auto, {', '.join(DTYPES)}")
    if cfg.scheduler.get("class_name") is not None and not isinstance(cfg.scheduler.class_name, str):
        raise ConfigError(f"scheduler.class_name must be a class name, got {cfg.scheduler.class_name!r}")
    if not isinstance(to_plain(cfg.scheduler.get("kwargs")), dict):
        raise ConfigError("scheduler.kwargs must be a mapping of scheduler config overrides")
    if str(cfg.get("offload", "none")) not in OFFLOAD:
        raise ConfigError(f"offload={cfg.get('offload')!r} is not valid; use one of {', '.join(OFFLOAD)}")
    for key in ("vae_tiling", "vae_slicing"):
        true_or_false(key, cfg.get(key, False), null_ok=False)
    _check_paths(cfg)


def _check_paths(cfg: Any) -> None:
    """The folders evalrun writes into are folders (or not there yet): a file there failed deep inside a run,
    after sampling, with a traceback."""
    from evalrun.paths import cache_dir

    paths = cfg.get("paths") or {}
    roots = {f"paths.{key}={paths.get(key)}": paths.get(key) for key in ("cache_dir", "output_dir", "image_store",
                                                                         "feature_cache")
             if paths.get(key) is not None and str(paths.get(key)).lower() != "none"}
    if not paths.get("cache_dir"):
        roots[f"the cache ($EVALRUN_CACHE or ~/.cache/evalrun: {cache_dir()})"] = cache_dir()
    for where, value in roots.items():
        path = Path(str(value)).expanduser()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{where} is a file, not a folder; point it at a folder (or remove the file)")
        if where.startswith("paths.output_dir"):
            continue  # Hydra makes the run's own folder under it
        try:  # made now (a run makes it anyway): a store that cannot be made failed after sampling
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{where} cannot be made ({exc.strerror or exc}); point it at a folder you can "
                              f"write to") from None


def _check_scheduler_fit(cfg: Any) -> None:
    """A scheduler option that does not fit the model's prediction family samples garbage without an
    error (an epsilon sampler integrating a flow model's velocity, or the reverse): refuse it here."""
    family = cfg.model.get("prediction")
    if family is not None and family != "auto" and family not in FAMILIES:
        raise ConfigError(f"model.prediction={family!r} is not valid; use one of {', '.join(FAMILIES)} or auto")
    fits = to_plain(cfg.scheduler.get("fits"))
    if fits is not None and (not isinstance(fits, list) or set(fits) - set(FAMILIES)):
        raise ConfigError(f"scheduler.fits={fits!r} is not valid; list some of {', '.join(FAMILIES)}")
    if family in (None, "auto") or fits is None or family in fits:
        return
    article = "an" if family[0] in "aeiou" else "a"
    raise ConfigError(mismatch(cfg.scheduler.name, fits, f"model {cfg.model.name} is {article} {family} model "
                               f"(model.prediction)", fitting_options(family)))


NEEDS = {"text": "a prompt or caption per image", "input_image": "an input image per edit"}


def build_metrics(cfg: Any, task: Any) -> dict[str, Any]:
    """Every metric of the run, constructed (settings checked, nothing loaded), fitted to the task."""
    from evalrun.metrics.base import MetricContext
    from evalrun.metrics.registry import METRICS, build_metric, metric_class
    from evalrun.paths import cache_dir

    context = MetricContext(cache_dir=cache_dir(cfg.paths.get("cache_dir") if cfg.get("paths") else None),
                            reference=cfg.get("reference"), seed=int(cfg.seed), task=task.name)
    metric_cfgs = cfg.get("metrics") or {}
    for name in metric_cfgs:
        if name not in METRICS:
            raise ConfigError(f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}")
        missing = [need for need in metric_class(name).needs if need not in task.provides]
        if missing:
            raise ConfigError(f"metric {name!r} needs {' and '.join(NEEDS.get(m, m) for m in missing)}, which model "
                              f"{cfg.model.name!r} (task {task.name}) does not give; drop it from metrics=[...]")
    return {name: build_metric(name, to_plain(metric_cfgs[name]), context) for name in metric_cfgs}


def validate(cfg: Any) -> Plan:
    """Raise ConfigError for the first invalid value; nothing heavier than numpy is imported."""
    from evalrun.prompts import validate_prompts
    from evalrun.tasks import get_task

    task = get_task(cfg.model.task)
    _check_runtime(cfg)
    if task.generates:
        _check_model(cfg.model)
        _check_scheduler_fit(cfg)
    task.validate(cfg)
    from evalrun.shards import validate as validate_shards

    validate_shards(cfg)
    if task.prompt_sources:
        validate_prompts(cfg.prompts)
    return Plan(task=task, metrics=build_metrics(cfg, task))


def check_image_count(metrics: dict[str, Any], n_images: int, task: Any = None) -> None:
    """Set metrics that cannot score this few images fail now, before any model loads; the fix named is
    the one for the run's task (``Task.more_images``) and the metric's settings."""
    more = getattr(task, "more_images", "raise num_images / num_images_per_prompt / prompts.limit")
    for name, metric in metrics.items():
        need = metric.required_images()
        if n_images < need:
            settings = {"splits": "lower its splits", "k": "lower its k", "min_n": "lower its min_n"}
            fewer = [f"{hint} (metrics.{name}.{key})" for key, hint in settings.items() if hasattr(metric, key)]
            makes = "this run makes" if getattr(task, "generates", True) else "this run has"
            raise ConfigError(f"metric {name!r} needs at least {need} images but {makes} {n_images}; "
                              f"{', '.join([more, *fewer])}, or drop {name}")


def validate_classes(cfg: Any, task: Any) -> type:
    """Second phase (imports diffusers): the pipeline and scheduler classes exist and fit the task's knobs."""
    from evalrun.pipelines import resolve_pipeline_class, scheduler_class

    cls = resolve_pipeline_class(cfg.model)
    if cfg.scheduler.class_name is not None:
        scheduler_class(cfg.scheduler.class_name)
    task.check_pipeline(cls, cfg)
    return cls


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # validate() checks a run's spelling; other callers (CLIs) meet it here
        raise ConfigError(f"device={device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available here; use device=cpu or device=auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                          f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device!r} but MPS (Apple GPUs) is not available here; use device=cpu or device=auto")
    return dev


def resolve_dtype(dtype: str, device):
    import torch

    # fp16 on GPU is what users of these checkpoints run; on CPU fp16 is slow and poorly supported.
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not valid; use auto, {', '.join(DTYPES)}")
    return getattr(torch, dtype)
