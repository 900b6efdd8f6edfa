"""Where a pipeline is loaded: hub id or local path, cached per process, scheduler swapped.

Hydra's basic launcher (and each joblib worker) runs a sweep's jobs one after another in one
process, so the pipeline loaded by the first job is kept and reused by every later job with
the same checkpoint, revision, dtype and device; only the scheduler changes between them.
"""

from __future__ import annotations

import inspect
import logging
import pickle
from pathlib import Path
from typing import Any

import evalrun.tiny as tiny
from evalrun.errors import ConfigError, EvalrunError, load_error
from evalrun.scheduler_checks import check_scheduler, shift_problem  # noqa: F401
from evalrun.schedulers import _diffusers_class, build_scheduler, scheduler_class  # noqa: F401

# Re-exported: run.py and config.py import the scheduler helpers from here.
__all__ = ["build_scheduler", "check_scheduler", "checked_scheduler", "checkpoint_scheduler", "load_pipeline",
           "model_identity", "pipeline_class", "resolve_pipeline_class", "scheduler_class", "set_scheduler"]

log = logging.getLogger(__name__)

# One pipeline at a time: a sweep over checkpoints must not hold several models in GPU memory.
_CACHE: dict[tuple, Any] = {}
_SCHEDULERS: dict[tuple, Any] = {}  # the checkpoint's own scheduler and model_index.json, by folder and file stats
_CHECKED: dict[tuple, dict] = {}     # checked_scheduler's answers


def pipeline_class(name: str) -> type:
    """The diffusers pipeline class called ``name`` (``model.pipeline``)."""
    return _diffusers_class(name, "DiffusionPipeline", "pipeline class (model.pipeline)", limit=40)


# AutoPipelineFor* classes are not pipelines: they pick one from the checkpoint's model_index.json.
_AUTO = {"AutoPipelineForText2Image": "AUTO_TEXT2IMAGE_PIPELINES_MAPPING",
         "AutoPipelineForImage2Image": "AUTO_IMAGE2IMAGE_PIPELINES_MAPPING",
         "AutoPipelineForInpainting": "AUTO_INPAINT_PIPELINES_MAPPING"}
OFFLOAD = ("none", "model", "sequential")


def model_index(model: Any) -> dict[str, Any]:
    """The checkpoint's model_index.json; a local folder's is kept while the file is unchanged (every job of
    a sweep asks)."""
    import diffusers

    source = tiny.resolve(model.path)
    kwargs = {"revision": str(model.revision)} if model.revision is not None else {}
    key = ("index", str(source), kwargs.get("revision"), _stats(Path(source), ("model_index.json",)))
    if key[3] is not None and key in _SCHEDULERS:
        return dict(_SCHEDULERS[key])
    try:
        found = diffusers.DiffusionPipeline.load_config(source, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise load_error(str(model.pipeline), str(model.path), exc, "model.path", local_dir=source,
                         marker="model_index.json") from None
    if key[3] is not None:
        _SCHEDULERS[key] = dict(found)
    return found


def resolve_pipeline_class(model: Any) -> type:
    """``model.pipeline`` as a class; ``AutoPipelineForText2Image`` (and the other Auto classes) resolve
    to the concrete class diffusers would pick for this checkpoint, read from its model_index.json."""
    name = str(model.pipeline)
    if name not in _AUTO:
        return pipeline_class(name)
    from diffusers.pipelines import auto_pipeline

    found = model_index(model).get("_class_name")
    try:
        return auto_pipeline._get_task_class(getattr(auto_pipeline, _AUTO[name]), found)
    except ValueError:
        raise ConfigError(f"{name} has no pipeline for checkpoints of class {found!r} (model.path={model.path}); "
                          f"set model.pipeline to a pipeline class") from None


def memory_options(options: Any) -> dict[str, Any]:
    """``offload`` / ``vae_tiling`` / ``vae_slicing`` from the run's config (defaults when absent)."""
    get = (lambda k, d: options.get(k, d)) if options is not None else (lambda k, d: d)
    return {"offload": str(get("offload", "none")), "vae_tiling": bool(get("vae_tiling", False)),
            "vae_slicing": bool(get("vae_slicing", False))}


def apply_memory_options(pipe, memory: dict[str, Any], device) -> None:
    """diffusers' CPU offload (instead of ``.to(device)``) and VAE tiling/slicing; off by default."""
    import torch

    offload = memory["offload"]
    if offload == "model" and torch.device(device).type == "cpu":  # sequential: refused by acceleration.check_device
        log.warning("offload=model on CPU: every component stays on the CPU, there is nothing to offload to")
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    for key, method in (("vae_tiling", "enable_tiling"), ("vae_slicing", "enable_slicing")):
        if memory[key]:
            vae = getattr(pipe, "vae", None)
            if not hasattr(vae, method):
                raise ConfigError(f"{key}=true: {type(pipe).__name__}'s VAE ({type(vae).__name__}) has no {method}(); "
                                  f"remove {key}")
            getattr(vae, method)()


def _cache_key(model: Any, device, dtype, memory: dict[str, Any], speed: dict[str, Any],
               identity: dict[str, Any]) -> tuple:
    from evalrun.hashing import stable_hash

    # The weights' hashes too: a folder re-saved in place between two runs of one process must be loaded
    # again, or the second run would sample the old weights and store them under the new ones' key.
    weights = stable_hash(identity["weights_sha256"], length=16)
    return (model.pipeline, str(model.path), model.revision, model.variant, weights, str(device), str(dtype),
            tuple(sorted(memory.items())), tuple(sorted((k, str(v)) for k, v in speed.items())))


def load_pipeline(model: Any, device, dtype, cfg: Any = None, identity: dict[str, Any] | None = None):
    """Load ``model.pipeline`` from ``model.path`` (hub id or local dir) with ``from_pretrained``.
    ``cfg`` (the run's config) carries offload/vae_tiling/vae_slicing and the speed options
    (``evalrun.acceleration``), applied once loaded; both are part of the cache key, as are the
    weights (``identity``: the run's :func:`model_identity`, read again when not given)."""
    import torch

    from evalrun.acceleration import options as speed_options

    memory = memory_options(cfg)
    speed = speed_options(cfg) if cfg is not None else {}
    key = _cache_key(model, device, dtype, memory, speed, identity or model_identity(model))
    if key in _CACHE:
        log.info("reusing loaded pipeline %s", model.path)
        return _CACHE[key]
    _CACHE.clear()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    cls = resolve_pipeline_class(model)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": False}  # diffusers' default, said: no checkpoint code
    if model.revision is not None:
        kwargs["revision"] = str(model.revision)
    if model.variant is not None:
        kwargs["variant"] = str(model.variant)
    if "safety_checker" in inspect.signature(cls.__init__).parameters:
        # The safety checker blacks out flagged images (many false positives), which silently
        # distorts FID and CLIP score; evaluation loads without it and flags black images instead.
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    source = tiny.resolve(model.path)
    log.info("loading %s from %s (%s, %s%s)", cls.__name__, model.path, dtype, device,
             "".join(f", {k}={v}" for k, v in memory.items() if v not in ("none", False)))
    try:
        pipe = cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError, TypeError, pickle.UnpicklingError) as exc:  # a component's pickled .bin
        raise load_error(cls.__name__, str(model.path), exc, "model.path", local_dir=source,
                         marker="model_index.json") from None
    apply_memory_options(pipe, memory, device)
    pipe.set_progress_bar_config(disable=True)  # evalrun shows its own progress over batches
    from evalrun.acceleration import apply

    apply(pipe, speed)
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
    names the class, ``scheduler/scheduler_config.json`` holds its config. Kept per process while
    those two files are unchanged (every job of a sweep asks; none modifies it)."""
    import diffusers

    source = tiny.resolve(model.path)
    kwargs = {"revision": str(model.revision)} if model.revision is not None else {}
    files = ("model_index.json", "scheduler/scheduler_config.json")
    key = (str(source), kwargs.get("revision"), _stats(Path(source), files))
    if key[2] is not None and key in _SCHEDULERS:
        return _SCHEDULERS[key]
    try:
        index = diffusers.DiffusionPipeline.load_config(source, **kwargs)
        if not isinstance(index.get("scheduler"), (list, tuple)) or len(index["scheduler"]) != 2:
            raise EvalrunError(f"model.path={model.path}: model_index.json names no scheduler component (such as "
                               f"\"scheduler\": [\"diffusers\", \"DDIMScheduler\"]); is it a diffusers pipeline folder?")
        cls = getattr(diffusers, index["scheduler"][1])
        found = cls.from_pretrained(source, subfolder="scheduler", **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise load_error(model.pipeline, str(model.path), exc, "model.path", local_dir=source,
                         marker="model_index.json") from None
    if key[2] is not None:  # a local folder (a hub id resolves through the hub cache each time)
        _SCHEDULERS.clear()
        _SCHEDULERS[key] = found
    return found


def _stats(folder: Path, names: tuple[str, ...]) -> tuple | None:
    try:
        from evalrun.hashing import file_stamp

        return tuple((n, *file_stamp((folder / n).stat())) for n in names)
    except OSError:
        return None


def _option_key(scheduler: Any) -> str:
    """A scheduler option (class, kwargs, fits) as text: equal options, equal keys."""
    import json

    from evalrun.plain import to_plain

    return json.dumps(to_plain(scheduler), sort_keys=True, default=str)


def as_built_by(pipeline_cls: type, checkpoint: Any) -> Any:
    """The checkpoint's scheduler as ``pipeline_cls`` holds it once built: DDIMPipeline converts whatever its
    files name (DDPMScheduler for google/ddpm-*) to DDIMScheduler, so ``scheduler=default`` samples with DDIM."""
    from evalrun.pipeline_source import converted_scheduler_class

    name = converted_scheduler_class(pipeline_cls)
    if name is None or type(checkpoint).__name__ == name:
        return checkpoint
    import diffusers

    return getattr(diffusers, name).from_config(checkpoint.config)


def checked_scheduler(pipeline_cls: type, checkpoint: Any, scheduler: Any, steps: int) -> dict[str, Any]:
    """The resolved config of ``scheduler`` built from the checkpoint's own, after ``check_scheduler``
    passed; remembered per (pipeline class, checkpoint scheduler object, option, steps), since each job
    of a sweep asks again and the answer depends on nothing else."""
    key = (pipeline_cls, checkpoint, _option_key(scheduler), steps)  # schedulers hash by identity
    if key not in _CHECKED:
        from evalrun.pipeline_source import scheduler_config_reads

        checkpoint = as_built_by(pipeline_cls, checkpoint)
        built, resolved = build_scheduler(checkpoint, scheduler, scheduler_config_reads(pipeline_cls))
        check_scheduler(pipeline_cls, built, steps, option=scheduler.get("name"))
        problem = shift_problem(pipeline_cls, checkpoint, scheduler, built, steps)
        if problem:
            raise EvalrunError(problem)
        if len(_CHECKED) > 256:
            _CHECKED.clear()
        _CHECKED[key] = resolved
    return dict(_CHECKED[key])


def set_scheduler(pipe, scheduler: Any) -> dict[str, Any]:
    """Swap ``scheduler`` into a loaded pipeline (from its checkpoint's own); returns the resolved config.

    The same option as the pipeline's last run keeps its scheduler object: a pipeline call starts
    with ``set_timesteps``, which resets a scheduler's state, as between the batches of one run."""
    if not hasattr(pipe, "_evalrun_default_scheduler"):
        pipe._evalrun_default_scheduler = pipe.scheduler
    wanted = _option_key(scheduler)
    last = getattr(pipe, "_evalrun_scheduler", None)
    if last is not None and last[0] == wanted and pipe.scheduler is last[1]:
        return dict(last[2])
    from evalrun.pipeline_source import scheduler_config_reads

    pipe.scheduler, resolved = build_scheduler(pipe._evalrun_default_scheduler, scheduler,
                                               scheduler_config_reads(type(pipe)))
    pipe._evalrun_scheduler = (wanted, pipe.scheduler, dict(resolved))
    return resolved


def clear_cache() -> None:
    _CACHE.clear()
    _SCHEDULERS.clear()
    _CHECKED.clear()
