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

from evalrun.checked import Checked, check
from evalrun.errors import ConfigError, EvalrunError


def check_job(cfg: Any, in_place: bool = False) -> Checked:
    """The checks a run makes before loading weights (evalrun.checked: the same checks, by construction), on
    a copy of ``cfg`` or (``in_place``, for a config that is run next) on ``cfg`` itself, left resolved and
    opened as :func:`evalrun.run.run` leaves it; what they found is handed to that run."""
    from omegaconf import open_dict

    job = cfg if in_place else copy.deepcopy(cfg)
    if "hydra" in job:  # Hydra's own section resolves only inside a running job
        with open_dict(job):
            del job["hydra"]
    return check(job)


def problems(jobs: Iterable[tuple[Sequence[str], Any]], in_place: bool = False) -> tuple[list, list[tuple[str, str]]]:
    """([each job's Checked, None where it failed], [(job, its one-line problem)]) for (overrides, config) jobs."""
    checked, found = [], []
    for overrides, cfg in jobs:
        try:
            checked.append(check_job(cfg, in_place))
        except EvalrunError as exc:
            checked.append(None)
            found.append((" ".join(overrides), str(exc)))
    return checked, found


def job_dir(cfg: Any):
    """A sweep job's own dir, from its composed config (``hydra.sweep.dir``/``subdir``)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    return Path(str(OmegaConf.select(cfg, "hydra.sweep.dir"))) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))


def already_complete(cfg: Any) -> bool:
    """Whether a sweep job's own dir (``hydra.sweep.dir``/``subdir``) holds a complete run of this very
    configuration (``run.json``'s config key). Its run recognises it before diffusers is imported, and if an
    input changed since, computes it again with its own checks: the pre-check, whose class checks import
    diffusers (seconds), leaves it alone, so re-running a finished sweep stays as quick as its runs."""
    import json

    from omegaconf import open_dict

    from evalrun.interpolations import resolve_in_place
    from evalrun.run import config_key
    from evalrun.runs import RUN_FILE

    try:
        record = json.loads((job_dir(cfg) / RUN_FILE).read_text(encoding="utf-8"))
        job = copy.deepcopy(cfg)
        with open_dict(job):
            del job["hydra"]
        resolve_in_place(job)
        return record.get("status") == "complete" and record.get("config_key") == config_key(job)
    except Exception:  # noqa: BLE001 - anything unreadable: the job is checked
        return False


def check_jobs(jobs: Iterable[tuple[Sequence[str], Any]], in_place: bool = False) -> list[Checked]:
    """Every job's Checked; else one ConfigError naming the first bad job (and how many there are)."""
    checked, found = problems(jobs, in_place)
    if found:
        more = f" ({len(found)} of {len(checked)} jobs fail these checks)" if len(found) > 1 else ""
        raise ConfigError(f"job {found[0][0]}: {found[0][1]}{more}; no job of the sweep was started")
    return checked
