"""A run's checks before anything heavy, shared by the run (evalrun.run) and a sweep's pre-check
(evalrun.preflight), so that the two cannot drift apart.

``check`` gives a :class:`Checked`: the config resolved and validated (its plan) and, for tasks that
generate, the pipeline class and resolved scheduler config read from the checkpoint's files (no
weights load). A sweep run through the Python API checks every job in place before the first one
samples and hands each run its ``Checked``: the run does not check the same config a second time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalrun.config import Plan, validate, validate_classes


@dataclass
class Checked:
    """What the checks of one config found: its plan, and (tasks that generate) its classes."""

    plan: Plan
    pipeline_cls: type | None = None
    scheduler_config: dict[str, Any] | None = None


def checked_config(cfg: Any) -> Plan:
    """``cfg`` resolved in place and opened, validated, and the cache pointed where it says. Interpolations
    are resolved once, in place: re-resolving them on every access cost more than the rest of the
    bookkeeping, and building a new config from the resolved values cost as much again (each distinct
    interpolation is parsed once per process: evalrun.interpolations)."""
    from omegaconf import OmegaConf

    from evalrun.interpolations import resolve_in_place

    resolve_in_place(cfg)
    OmegaConf.set_struct(cfg, False)
    plan = validate(cfg)
    point_cache(cfg)
    return plan


def point_cache(cfg: Any) -> None:
    """The cache where ``paths.cache_dir`` says (per run: a sweep's jobs may name different caches)."""
    if cfg.get("paths") and cfg.paths.get("cache_dir"):
        os.environ["EVALRUN_CACHE"] = str(Path(str(cfg.paths.cache_dir)).expanduser())


def checked_classes(cfg: Any, task: Any) -> tuple[type, dict[str, Any]]:
    """The pipeline class and the resolved scheduler config, checked from the checkpoint's files."""
    from evalrun.acceleration import check_device
    from evalrun.config import resolve_device
    from evalrun.checkpoint_fit import checked_components
    from evalrun.pipelines import checked_scheduler, checkpoint_scheduler

    check_device(cfg, resolve_device(cfg.device).type)  # device=auto, resolved: options that need a GPU
    pipeline_cls = validate_classes(cfg, task)
    scheduler = checked_scheduler(pipeline_cls, checkpoint_scheduler(cfg.model), cfg.scheduler, int(cfg.steps))
    checked_components(cfg, pipeline_cls)  # after the scheduler: a folder without one is named as such first
    return pipeline_cls, scheduler


def check(cfg: Any) -> Checked:
    """Every check that needs no weights, on ``cfg`` itself (left resolved and opened)."""
    plan = checked_config(cfg)
    if not plan.task.generates:
        return Checked(plan)
    return Checked(plan, *checked_classes(cfg, plan.task))
