"""Schedulers: the run's option built from the checkpoint's own, before any weights load (the checks that
refuse a pair that would sample wrongly are in :mod:`evalrun.scheduler_checks`).

- **Families.** A scheduler option declares the prediction families it fits (``fits:`` in
  ``conf/scheduler/*.yaml``). ``config.validate`` refuses a mismatch from the preset's
  ``model.prediction``; :func:`build_scheduler` checks it again against the checkpoint's own
  scheduler (a preset reused with another ``model.path``, or ``model.prediction=auto``). An epsilon
  sampler on a flow model (or the reverse) runs without error and samples garbage.
- **Shift.** FlowMatch* schedulers read ``shift``; DPM-Solver/UniPC on flow sigmas read
  ``flow_shift``; ``from_config`` maps neither onto the other, so a plain swap samples with shift
  1.0 (SD3's 3.0 lost) or drops Sana's ``flow_shift=3.0``. The checkpoint's value is carried across
  and an option's ``shift`` goes to whichever key the class reads; the resolved config records it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.scheduler_fits import fitting_options, mismatch


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


def family(scheduler) -> str:
    """``flow``, ``v_prediction`` or ``epsilon`` (``sample`` prediction counts as epsilon: the same samplers fit)."""
    config = scheduler.config
    if type(scheduler).__name__.startswith("FlowMatch") or config.get("use_flow_sigmas") \
            or config.get("prediction_type") == "flow_prediction":
        return "flow"
    return "v_prediction" if config.get("prediction_type") == "v_prediction" else "epsilon"


@functools.lru_cache(maxsize=None)  # asked for each key of a resolved config, for every job
def _init_params(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}


def _carry_shift(default, cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Map an option's ``shift`` to the key ``cls`` reads, and carry the checkpoint's shift across the
    FlowMatch* (``shift``) / DPM-UniPC (``flow_shift``) spellings, which ``from_config`` does not."""
    params, source = _init_params(cls), default.config
    kwargs = dict(kwargs)
    if "shift" in kwargs and "shift" not in params and "flow_shift" in params:
        kwargs["flow_shift"] = kwargs.pop("shift")
    elif "flow_shift" in kwargs and "flow_shift" not in params and "shift" in params:
        kwargs["shift"] = kwargs.pop("flow_shift")
    if "shift" in kwargs or "flow_shift" in kwargs or family(default) != "flow":
        return kwargs
    to_flow_sigmas = kwargs.get("use_flow_sigmas", source.get("use_flow_sigmas"))
    if "flow_shift" in params and to_flow_sigmas and "shift" in source and "flow_shift" not in _init_params(type(default)):
        kwargs["flow_shift"] = source["shift"]
    elif "shift" in params and "flow_shift" in source and "shift" not in _init_params(type(default)):
        kwargs["shift"] = source["flow_shift"]
    return kwargs


def build_scheduler(default, scheduler: Any, pipeline_reads: frozenset[str] = frozenset()):
    """``scheduler`` (a config-group entry) built with ``from_config`` of the checkpoint's own scheduler.

    Values the checkpoint set explicitly survive a switch, so the class name alone does not say
    what ran: the resolved config returned beside it is stored with the run. ``kwargs`` set to null
    are not passed (an option's ``shift: null`` keeps the checkpoint's). ``pipeline_reads``: config keys
    the pipeline reads itself (``pipeline_source.scheduler_config_reads``), recorded where present.
    """
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(scheduler.kwargs, resolve=True) if OmegaConf.is_config(scheduler.kwargs) \
        else dict(scheduler.kwargs or {})
    kwargs = {k: v for k, v in (raw or {}).items() if v is not None}
    fits = scheduler.get("fits")
    if fits is not None and family(default) not in list(fits):
        raise EvalrunError(mismatch(scheduler.name, list(fits), f"this checkpoint's own scheduler "
                                    f"({type(default).__name__}) is a {family(default)} scheduler",
                                    fitting_options(family(default))))
    if scheduler.class_name is None and not kwargs:
        built = type(default).from_config(default.config)
    else:
        cls = scheduler_class(scheduler.class_name) if scheduler.class_name else type(default)
        kwargs = _carry_shift(default, cls, kwargs)
        try:
            built = cls.from_config(default.config, **kwargs)
        except (TypeError, ValueError) as exc:
            raise EvalrunError(f"scheduler {scheduler.name!r} ({cls.__name__}) rejected kwargs {kwargs}: {exc}") from None
        # The class's own parameters: from_config keeps the checkpoint's other keys in the config, unread
        unused = sorted(set(kwargs) - _init_params(cls))
        if unused:
            raise EvalrunError(f"scheduler.kwargs {unused} are not options of {cls.__name__}; "
                               f"valid: {', '.join(sorted(_init_params(cls)))}")
    # The kwargs may turn the option into another family's sampler (use_flow_sigmas on dpm, prediction_type=epsilon
    # on flow_dpm): check what was built, not only the option's declared fits.
    inconsistent = (family(built) == "flow" and "prediction_type" in _init_params(type(built))
                    and built.config.get("prediction_type") != "flow_prediction")
    if (family(built) == "flow") != (family(default) == "flow") or inconsistent:
        what = (f"flow sigmas with prediction_type={built.config.get('prediction_type')}" if inconsistent
                else f"a {family(built)} sampler")
        raise EvalrunError(f"scheduler {scheduler.name!r} with kwargs {kwargs} builds {what} ({type(built).__name__}), "
                           f"which does not fit this checkpoint's own {family(default)} scheduler "
                           f"({type(default).__name__}); use one of: {', '.join(fitting_options(family(default)))}")
    built._evalrun_checkpoint = default  # check_scheduler lists the options that work from it
    # What ran: the class's parameters (a FlowMatch scheduler built from DPM's config does not read its solver_order)
    # and the keys the pipeline reads from the config (FLUX's max_shift, carried into UniPC by from_config).
    read = _init_params(type(built)) | pipeline_reads
    resolved = {k: v for k, v in dict(built.config).items() if not k.startswith("_") and k in read}
    return built, {"class": type(built).__name__, **resolved}
