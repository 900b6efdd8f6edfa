"""Whether a scheduler samples correctly in a pipeline, checked before any weights load; a pair that would
fail mid-run or silently sample wrongly is refused, naming the options that work.

- **Timesteps.** Flow pipelines call ``set_timesteps`` their own way (always their own ``sigmas``,
  always ``mu``, ...). :func:`check_scheduler` replays that call, so a pair that would raise
  mid-generation (FlowMatchHeun on FLUX, DPM on FLUX.1-schnell, ...) is refused up front, and so is a
  schedule that comes out wrong (a handful of distinct timesteps, flow sigmas that rise or leave [0, 1]).
- **Noise.** A scheduler that draws noise in ``step`` needs the per-image generators there. Every
  flow pipeline but Sana's, and DiT, call ``step`` without them: the noise would come from the
  global RNG and images would depend on their batch. Such pairs are refused.
- **Shift.** A shift that a scheduler with dynamic shifting ignores is refused (a sweep over it would make
  the same images under several names).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from evalrun.errors import EvalrunError, first_line
from evalrun.pipeline_source import passes_generator, pipeline_source, step_keywords
from evalrun.scheduler_fits import FAMILIES, scheduler_options
from evalrun.schedulers import build_scheduler, family

# Schedulers whose step() draws fresh noise (others become stochastic through their config, below).
_STOCHASTIC = {"DDPMScheduler", "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
               "DPMSolverSDEScheduler", "FlowMatchLCMScheduler", "LCMScheduler", "TCDScheduler",
               "SASolverScheduler", "CMStochasticIterativeScheduler"}

# How a pipeline's __call__ sets its timesteps (diffusers 0.42 source), replayed by check_scheduler:
# sigmas "linspace" = np.linspace(1, 1/N, N) ("linspace-flow": None instead when the scheduler uses
# flow sigmas), "list" = the same as a Python list, "cogview" = integer timesteps and their sigmas;
# mu "always", or "dynamic" = only when the scheduler's config has use_dynamic_shifting. Pipelines not
# listed call set_timesteps(N) (SD, SDXL, PixArt, Sana: sigmas/timesteps only when the user passes them).
_TIMESTEPS: dict[str, tuple[str | None, str | None]] = {
    "StableDiffusion3Pipeline": (None, "dynamic"),
    "FluxPipeline": ("linspace-flow", "always"), "Flux2Pipeline": ("linspace-flow", "always"),
    "FluxKontextPipeline": ("linspace", "always"), "ChromaPipeline": ("linspace", "always"),
    "Lumina2Pipeline": ("linspace", "always"), "QwenImagePipeline": ("linspace", "always"),
    "QwenImageEditPipeline": ("linspace", "always"), "ZImagePipeline": ("list", "always"),
    "CogView4Pipeline": ("cogview", "always"),
    "SanaPipeline": (None, None), "SanaSprintPipeline": (None, None),  # never mu: dynamic shifting would raise
}


def _replay_timesteps(pipeline_cls: type, sched, steps: int) -> None:
    """Call ``set_timesteps`` on ``sched`` as ``pipeline_cls.__call__`` would (``_TIMESTEPS``)."""
    import numpy as np

    how = _TIMESTEPS.get(pipeline_cls.__name__)
    retrieve = getattr(sys.modules.get(pipeline_cls.__module__), "retrieve_timesteps", None)
    if how is None or retrieve is None:
        sched.set_timesteps(steps)
        return
    sigmas_how, mu_how = how
    extra: dict[str, Any] = {}
    if mu_how == "always" or (mu_how == "dynamic" and sched.config.get("use_dynamic_shifting")):
        extra["mu"] = 1.0  # the value does not decide whether the call raises
    linspace = np.linspace(1.0, 1 / steps, steps)
    if sigmas_how == "cogview":
        n = sched.config.get("num_train_timesteps", 1000)
        timesteps = np.linspace(n, 1.0, steps).astype(np.int64).astype(np.float32)
        retrieve(sched, steps, "cpu", timesteps, timesteps / n, **extra)
        return
    sigmas = {"linspace": linspace, "list": linspace.tolist(), None: None,
              "linspace-flow": None if sched.config.get("use_flow_sigmas") else linspace}[sigmas_how]
    retrieve(sched, steps, "cpu", sigmas=sigmas, **extra)


def is_stochastic(sched) -> bool:
    """Whether ``sched.step`` draws noise (ancestral, SDE, LCM/TCD, FlowMatch with stochastic_sampling)."""
    return type(sched).__name__ in _STOCHASTIC or "sde" in str(sched.config.get("algorithm_type", "")) \
        or bool(sched.config.get("stochastic_sampling"))


def scheduler_problem(pipeline_cls: type, scheduler, steps: int) -> str | None:
    """Why ``scheduler`` would sample wrongly (or fail) in ``pipeline_cls``, or None."""
    sched = type(scheduler).from_config(scheduler.config)
    name, pipe = type(scheduler).__name__, pipeline_cls.__name__
    try:
        _replay_timesteps(pipeline_cls, sched, steps)
    except Exception as exc:  # noqa: BLE001 - whatever set_timesteps raises would stop the run mid-way
        if pipe not in _TIMESTEPS and sched.config.get("use_dynamic_shifting"):
            return None  # an unlisted pipeline may pass the mu that the plain call lacks: let it decide
        detail = first_line(exc, 160)
        detail = type(exc).__name__ if detail in ("", type(exc).__name__) else f"{type(exc).__name__}: {detail}"
        return (f"{pipe} cannot set {steps} timesteps with {name} (as it calls set_timesteps), so the run would fail "
                f"after the model loads ({detail})")
    found = getattr(sched, "timesteps", None)
    timesteps = [float(t) for t in found] if found is not None else []
    trained = sched.config.get("num_train_timesteps")
    if timesteps and len(set(timesteps)) < min(steps, len(timesteps)) // 2:  # PNDM at 1001 steps: timestep 1, 1002x
        return (f"{name} gives {len(set(timesteps))} distinct timestep(s) for steps={steps}, so it would sample "
                f"wrongly" + (f"; use at most {trained} steps (its training timesteps)" if trained and steps > trained
                              else ""))
    found = getattr(sched, "sigmas", None)
    sigmas = [float(s) for s in found] if family(sched) == "flow" and found is not None else []  # flow schedules
    if any(b > a + 1e-6 for a, b in zip(sigmas, sigmas[1:])):
        return f"{name} with this config gives rising sigmas ({', '.join(f'{x:.3g}' for x in sigmas[:6])}), " \
               f"so it would sample wrongly"
    if sigmas and max(sigmas) > 1.0 + 1e-4:
        spacing = [k for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas")
                   if sched.config.get(k)]
        return (f"{name} with {', '.join(k + '=true' for k in spacing) or 'this config'} ignores its flow sigmas and "
                f"samples at sigmas up to {max(sigmas):.4g}, outside a flow model's [0, 1], so it would sample wrongly")
    sigma = float(getattr(sched, "init_noise_sigma", 1.0))
    if "init_noise_sigma" not in pipeline_source(pipeline_cls) and abs(sigma - 1.0) > 1e-6:
        return (f"{pipe} does not scale its starting noise by the scheduler's init_noise_sigma ({sigma:.3g} for "
                f"{name} at {steps} steps), so it would sample wrongly")
    step = inspect.signature(type(sched).step).parameters
    refused = sorted(step_keywords(pipeline_cls) - set(step))
    if refused and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in step.values()):
        return (f"{pipe} passes {', '.join(k + '=' for k in refused)} to scheduler.step, which {name}.step does not "
                f"take, so the run would fail at its first step")
    if is_stochastic(sched) and not passes_generator(pipeline_cls, sched):
        return (f"{pipe} calls scheduler.step without the per-image generators, so the stochastic {name} would "
                f"draw from the global RNG and make images depend on their batch")
    return None


_SHIFT_KEYS = ("shift", "flow_shift", "use_dynamic_shifting")


def _schedule(pipeline_cls: type, sched, steps: int):
    """The timesteps and sigmas ``pipeline_cls`` would sample ``sched`` at (``_replay_timesteps``)."""
    import numpy as np

    fresh = type(sched).from_config(sched.config)
    _replay_timesteps(pipeline_cls, fresh, steps)
    as_array = (lambda x: np.asarray(x.tolist() if hasattr(x, "tolist") else x, dtype=np.float64))
    return np.concatenate([as_array(fresh.timesteps), as_array(getattr(fresh, "sigmas", []))])


def shift_problem(pipeline_cls: type, checkpoint, scheduler: Any, built, steps: int) -> str | None:
    """Why a shift the option sets would not move one timestep in ``pipeline_cls``, or None: a scheduler with
    dynamic shifting ignores ``shift`` (the pipeline's ``mu`` decides), so a sweep over it would make the
    same images under several names. Found by sampling the schedule again at another value."""
    import numpy as np
    from omegaconf import OmegaConf

    kwargs = {k: v for k, v in dict(scheduler.get("kwargs") or {}).items() if k in _SHIFT_KEYS and v is not None}
    if not kwargs:
        return None
    schedule = _schedule(pipeline_cls, built, steps)
    for key, value in kwargs.items():
        other = (not value) if isinstance(value, bool) else float(value) * 2 + 1
        try:
            alternative, _ = build_scheduler(checkpoint, OmegaConf.merge(scheduler, {"kwargs": {key: other}}))
            same = np.array_equal(schedule, _schedule(pipeline_cls, alternative, steps))
        except Exception:  # noqa: BLE001 - a value the class refuses: nothing to compare
            continue
        if same:
            fix = ("add scheduler.kwargs.use_dynamic_shifting=false to sample with a fixed shift"
                   if built.config.get("use_dynamic_shifting") and key != "use_dynamic_shifting" else "remove it")
            return (f"scheduler.kwargs.{key}={value} has no effect: {pipeline_cls.__name__} samples the same timesteps "
                    f"with {type(built).__name__} at any {key} (a sweep over it would make the same images under "
                    f"several names); {fix}")
    return None


def working_options(pipeline_cls: type, checkpoint, steps: int) -> list[str]:
    """The scheduler options (``conf/scheduler``) that fit the checkpoint and pass every check here."""
    from omegaconf import OmegaConf

    found = []
    for name, option in scheduler_options().items():
        if family(checkpoint) not in option.get("fits", FAMILIES):
            continue
        try:
            built, _ = build_scheduler(checkpoint, OmegaConf.create({"class_name": None, "kwargs": {}, **option}))
        except EvalrunError:
            continue
        if scheduler_problem(pipeline_cls, built, steps) is None:
            found.append(name)
    return found


def check_scheduler(pipeline_cls: type, scheduler, steps: int, option: str | None = None) -> None:
    """Refuse a scheduler/pipeline pair that would fail mid-run or silently sample wrongly, naming
    the options that work (e.g. DDPMPipeline and DiTPipeline never scale the starting noise by
    ``init_noise_sigma``: Euler/LMS/Heun there give garbage that FID would score without complaint).
    ``option``: the chosen option's name; where it works with its own kwargs, the kwargs set are the problem."""
    problem = scheduler_problem(pipeline_cls, scheduler, steps)
    if problem is None:
        return
    checkpoint = getattr(scheduler, "_evalrun_checkpoint", None)
    options = working_options(pipeline_cls, checkpoint, steps) if checkpoint is not None else []
    if option in options:
        options.remove(option)
        raise EvalrunError(f"{problem}; scheduler={option} works with its own kwargs: drop the scheduler.kwargs set "
                           f"here" + (f", or use one of: {', '.join(options)}" if options else ""))
    raise EvalrunError(f"{problem}; use {'one of: ' + ', '.join(options) if options else 'another scheduler'}")
