"""What a diffusers pipeline class does with its scheduler, read from its source (diffusers 0.42) without
building it: whether it scales the starting noise, which keywords its ``scheduler.step`` calls pass, and
which scheduler class its ``__init__`` converts any scheduler to. evalrun.schedulers refuses the pairs
that would fail or sample wrongly from these, before any weights load.
"""

from __future__ import annotations

import functools
import inspect
import re
import textwrap


@functools.lru_cache(maxsize=None)
def pipeline_source(pipe_cls: type) -> str:
    """The source of the pipeline class and its diffusers bases (what init_noise_sigma scaling is searched in)."""
    return "".join(inspect.getsource(cls) for cls in pipe_cls.__mro__
                   if cls.__module__.startswith("diffusers.pipelines") and cls.__name__ != "DiffusionPipeline")


@functools.lru_cache(maxsize=None)
def step_calls(pipeline_cls: type) -> tuple[str, ...]:
    """The argument text of every ``scheduler.step(...)`` call in the pipeline's ``__call__``."""
    owner = next((c for c in pipeline_cls.__mro__ if "__call__" in vars(c)), pipeline_cls)
    source = inspect.getsource(owner.__call__)
    return tuple(part.split(")", 1)[0] for part in source.split("scheduler.step(")[1:])


def step_keywords(pipeline_cls: type) -> set[str]:
    """The keyword arguments the pipeline's ``scheduler.step`` calls pass by name (``eta=``, ``generator=``)."""
    return {name for call in step_calls(pipeline_cls) for name in re.findall(r"\b([A-Za-z_]\w*)\s*=(?!=)", call)}


def passes_generator(pipeline_cls: type, sched) -> bool:
    """Whether every ``scheduler.step`` call passes the generators (directly or in extra_step_kwargs;
    Lumina 2 builds extra_step_kwargs but never passes them)."""
    calls = step_calls(pipeline_cls)
    passes = bool(calls) and all("generator" in c or "extra_step_kwargs" in c for c in calls)
    return passes and "generator" in inspect.signature(type(sched).step).parameters


@functools.lru_cache(maxsize=None)
def converted_scheduler_class(pipeline_cls: type) -> str | None:
    """The scheduler class ``pipeline_cls.__init__`` converts whatever scheduler it is given to, always
    (DDIMPipeline: ``scheduler = DDIMScheduler.from_config(scheduler.config)``), or None. A checkpoint
    whose files name DDPMScheduler then samples with DDIM."""
    owner = next((c for c in pipeline_cls.__mro__ if "__init__" in vars(c)), pipeline_cls)
    try:
        source = textwrap.dedent(inspect.getsource(owner.__init__))
    except (OSError, TypeError):
        return None
    # Only at the body's own indentation: a conversion under an ``if`` depends on the scheduler given.
    found = re.search(r"^    scheduler = (\w+)\.from_config\(scheduler\.config\)\s*$", source, re.MULTILINE)
    return found.group(1) if found else None


@functools.lru_cache(maxsize=None)
def scheduler_config_reads(pipeline_cls: type) -> frozenset[str]:
    """The scheduler config keys the pipeline itself reads (``self.scheduler.config.get("max_shift", 1.15)``
    for FLUX's and Qwen-Image's ``mu``): ``from_config`` carries them into any scheduler class swapped in,
    so they decide the images even where that class has no such parameter."""
    try:
        source = pipeline_source(pipeline_cls)
    except (OSError, TypeError):
        return frozenset()
    found = re.findall(r"scheduler\.config\.get\(\s*[\"'](\w+)[\"']", source)
    found += [k for k in re.findall(r"scheduler\.config\.(\w+)", source) if k != "get"]
    found += re.findall(r"scheduler\.config\[[\"'](\w+)[\"']\]", source)
    return frozenset(found)
