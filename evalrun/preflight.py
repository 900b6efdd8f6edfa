"""A sweep's jobs checked before the first one starts.

A job's own run checks its config before anything heavy, but in a sweep the first jobs sample for
minutes or hours before a later job's mistake (``scheduler=ddim,flow_euler`` on an epsilon model,
``steps=2,0``) is read. Here every job's config gets the checks that need no weights: the static
validation (``evalrun.config.validate``), the pipeline and scheduler classes, and the scheduler
against the checkpoint's own (from its config files). The Python API refuses a sweep with a bad job
before any job runs; the CLI names every bad job when the sweep starts and runs the others (a sweep
over models x samplers runs the pairs that fit, each pair that does not failing alone, in a second).
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Sequence

from evalrun.errors import ConfigError, EvalrunError


def check_job(cfg: Any, in_place: bool = False) -> None:
    """The checks a run makes before loading weights (its own helpers: the same checks, by construction); on a
    copy of ``cfg``, or (``in_place``, for a config that is run next) on ``cfg`` itself, left resolved and
    opened as :func:`evalrun.run.run` leaves it."""
    from omegaconf import open_dict

    from evalrun.run import checked_classes, checked_config

    job = cfg if in_place else copy.deepcopy(cfg)
    if "hydra" in job:  # Hydra's own section resolves only inside a running job
        with open_dict(job):
            del job["hydra"]
    plan = checked_config(job)
    if plan.task.generates:
        checked_classes(job, plan.task)


def problems(jobs: Iterable[tuple[Sequence[str], Any]], in_place: bool = False) -> tuple[int, list[tuple[str, str]]]:
    """(how many jobs, [(job, its one-line problem)]) for (overrides, config) jobs."""
    n, found = 0, []
    for overrides, cfg in jobs:
        n += 1
        try:
            check_job(cfg, in_place)
        except EvalrunError as exc:
            found.append((" ".join(overrides), str(exc)))
    return n, found


def check_jobs(jobs: Iterable[tuple[Sequence[str], Any]], in_place: bool = False) -> int:
    """Raise one ConfigError naming the first bad job (and how many there are); returns the job count."""
    n, found = problems(jobs, in_place)
    if found:
        more = f" ({len(found)} of {n} jobs fail these checks)" if len(found) > 1 else ""
        raise ConfigError(f"job {found[0][0]}: {found[0][1]}{more}; no job of the sweep was started")
    return n
