"""The Python API: the same code path as the CLI, for notebooks and scripts.

    import evalrun
    result = evalrun.evaluate(["model=sd15", "scheduler=dpm", "prompts.limit=50"])
    result.metrics                  # one-row DataFrame (metrics.csv); result.per_image; result.run_dir
    sweep = evalrun.sweep(["model=sd15", "scheduler=ddim,dpm", "seed=0,1,2"])
    sweep.summary                   # seed-averaged table (summary.csv); sweep.runs; sweep.report()
    evalrun.load_sweep("outputs/multirun/2026-11-24/10-00-00").summary

Runs are in-process: a sweep's jobs share the loaded pipeline and metric models, as the basic
launcher's do. Use the CLI (``evalrun ... -m``) for Hydra's launchers (joblib, SLURM, Ray).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from evalrun.composition import compose  # noqa: F401  (evalrun.composition: the Python API's compose)
from evalrun.errors import ConfigError, EvalrunError

log = logging.getLogger("evalrun")


@dataclass
class RunResult:
    run_dir: Path
    record: dict[str, Any]

    @property
    def metrics(self):
        import pandas as pd

        return pd.read_csv(self.run_dir / "metrics.csv")

    @property
    def per_image(self):
        import pandas as pd

        return pd.read_csv(self.run_dir / "per_image.csv")

    @property
    def values(self) -> dict[str, float]:
        return dict(self.record.get("values", {}))


@dataclass
class SweepResult:
    sweep_dir: Path

    @property
    def runs(self):
        from evalrun.runs import load_runs

        return load_runs([self.sweep_dir])

    @property
    def summary(self):
        import pandas as pd

        return pd.read_csv(self.sweep_dir / "summary.csv")

    def report(self, **options: Any) -> dict[str, list[Path]]:
        """Tables, comparisons, plots and the gallery (``evalrun.report.build.build_report`` options)."""
        from evalrun.report.build import build_report

        return build_report([self.sweep_dir], **options)


def _check_overrides(overrides: Sequence[str]) -> None:
    """The command line's spelling checks (evalrun.override_keys), raised as the CLI prints them."""
    from evalrun.errors import ConfigError
    from evalrun.override_keys import check_command_line, override_list

    problem = check_command_line(override_list(overrides), cli=False)
    if problem:
        raise ConfigError(problem)
    for item in overrides:  # composed with Hydra, run without its app: its run dirs and launchers never apply
        key = item.lstrip("+~").split("=", 1)[0]
        if key.startswith(("hydra.", "hydra/")) and not key.startswith(("hydra.searchpath", "hydra.sweeper.params")):
            raise ConfigError(f"{item}: the Python API does not run Hydra's app, so hydra.* settings other than "
                              f"hydra.searchpath and hydra.sweeper.params do not apply; use run_dir= / sweep_dir=, or "
                              f"the CLI for a launcher")


def _is_sweep(override: str) -> bool:
    """``key=a,b`` or ``key=range(...)``: several values (Hydra's grammar; a value it cannot parse is Hydra's to refuse)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([override])[0].is_sweep_override()
    except Exception:  # noqa: BLE001 - Hydra's parse error comes with the composition, in its own words
        return False


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """A notebook's process as it was: the global torch RNG (pipelines that ignore the per-image generators
    draw from it, so runs seed it), ``$EVALRUN_CACHE`` (a run points it at its paths.cache_dir, which a
    later call without that key must not inherit), and the libraries' log levels and progress-bar settings
    that runs quiet, and the warning filters."""
    import os
    import warnings

    import torch

    from evalrun.console import QUIET_ENV, QUIET_LOGGERS

    env = {key: os.environ.get(key) for key in ("EVALRUN_CACHE", *QUIET_ENV)}
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    rng = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    filters = list(warnings.filters)
    try:
        yield
    finally:
        warnings.filters[:] = filters
        torch.random.set_rng_state(rng)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for name, level in levels.items():
            if logging.getLogger(name).level != level:
                logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _hydra_refusals() -> Iterator[None]:
    """Hydra's and OmegaConf's refusals of an override (a key not in the config, a parse error) as a one-line
    ConfigError, as the CLIs print them, with Hydra's advice (``To append to your config use +key=...``) kept."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only Hydra's and OmegaConf's own; anything else is raised as it is
        if not type(exc).__module__.startswith(("hydra.", "omegaconf.")):
            raise
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise ConfigError(" ".join(line if line.endswith((".", ";", ":")) else line + ";" for line in lines[:-1])
                          + (" " if len(lines) > 1 else "") + lines[-1]) from None


def _stamp(kind: str, cfg: Any) -> Path:
    now = datetime.datetime.now()
    return Path(str(cfg.paths.output_dir)) / kind / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


def evaluate(overrides: Sequence[str] = (), *, config: Any = None, run_dir: str | Path | None = None) -> RunResult:
    """One run, as ``evalrun OVERRIDES``: returns its results and where it wrote them."""
    from evalrun.added_keys import check_added_keys
    from evalrun.run import run

    if config is not None and overrides:  # one would be ignored: the config is run as given
        raise ConfigError("evaluate() takes overrides or config=, not both; compose the config with the overrides "
                          "(evalrun.compose([...])) or pass the overrides alone")
    if config is None:
        _check_overrides(overrides)
        swept = [o for o in overrides if _is_sweep(o)]
        if swept:  # Hydra's own message advises --multirun
            raise ConfigError(f"{swept[0]} is a sweep (several values): evaluate() makes one run; use "
                              f"evalrun.sweep([...])")
    with _hydra_refusals():
        cfg = config if config is not None else compose(overrides)
    check_added_keys(overrides, cfg)
    target = Path(run_dir) if run_dir is not None else _stamp("runs", cfg)
    with _process_state_kept():
        return RunResult(target, run(cfg, target))


def expand(overrides: Sequence[str]) -> list[list[str]]:
    """A sweep's jobs, as Hydra's basic sweeper expands ``key=a,b`` lists (cartesian product)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if override.is_sweep_override():
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(job) for job in itertools.product(*choices)]


def sweep_jobs(params: Any, overrides: Sequence[str]) -> list[list[str]]:
    """The jobs of a sweep, as Hydra's basic sweeper makes them: an experiment's ``hydra.sweeper.params``,
    then the command line's overrides (which win), each ``key=a,b`` list expanded."""
    combined: dict[str, str] = {str(k): f"{k}={v}" for k, v in params.items()}
    for item in overrides:
        combined[item.split("=", 1)[0]] = item
    return expand(list(combined.values()))


def sweep(overrides: Sequence[str], *, sweep_dir: str | Path | None = None) -> SweepResult:
    """Every combination of the overrides' comma lists (and of an experiment file's
    ``hydra.sweeper.params``), one run each, then the summary, as ``evalrun OVERRIDES -m`` does."""
    from evalrun.aggregate import nothing_finished, write_summary
    from evalrun.__main__ import sweep_params
    from evalrun.composition import JobComposer
    from evalrun.added_keys import check_added_keys
    from evalrun.jobdirs import job_dirname
    from evalrun.outputs import background_writes
    from evalrun.preflight import check_jobs
    from evalrun.run import run

    from hydra.core.override_parser.overrides_parser import OverridesParser

    _check_overrides(overrides)
    with _hydra_refusals():
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]  # Hydra refuses lists outside -m
        configs = JobComposer()  # one Hydra composition per sweep; jobs rebuilt from it (evalrun/composition.py)
        jobs = sweep_jobs(sweep_params(configs.sweep_config(fixed).hydra), overrides)
        composed = [configs(job) for job in jobs]
    varying = {k.split("=", 1)[0] for k in jobs[0] if len({job[jobs[0].index(k)] for job in jobs}) > 1}
    for job, cfg in zip(jobs, composed):
        check_added_keys(job, cfg)
        if int(cfg.get("num_shards") or 1) > 1 and not cfg.get("shard_merge_dir"):  # the CLI's sweeper names it
            raise ConfigError(f"{' '.join(job)}: sharded jobs merge where the CLI's sweep names them; run the sweep "
                              f"with the CLI (evalrun ... -m) or set shard_merge_dir=DIR")
    with _process_state_kept():  # the checks point $EVALRUN_CACHE and quiet the libraries, as the runs do
        checked = check_jobs(zip(jobs, composed), in_place=True)  # every job, before the first one samples
        target = Path(sweep_dir) if sweep_dir is not None else _stamp("multirun", composed[0])
        failed = 0
        with background_writes():  # a run's files are written while the next run samples
            for job, cfg, found in zip(jobs, composed, checked):  # the job dirs the CLI would make for the same sweep
                named = [o for o in job if not o.lstrip("+~").startswith("hydra")]  # as Hydra's override_dirname
                run_dir = target / job_dirname(",".join(sorted(named)), str(target), varying=varying)
                failed += not _ran(run, cfg, run_dir, found)
        try:
            write_summary(target)
        except FileNotFoundError:  # no finished run; failed_runs.csv is written, and says why each failed
            if failed != len(jobs):
                raise
            raise EvalrunError(nothing_finished(target)) from None
    if failed:  # as the CLI: every job ran, the summary holds the others, and the sweep fails
        raise EvalrunError(f"{failed} of {len(jobs)} job(s) failed (listed in {target / 'failed_runs.csv'}); the "
                           f"others are summarised in {target / 'summary.csv'}")
    return SweepResult(target)


def _ran(run: Any, cfg: Any, run_dir: Path, checked: Any) -> bool:
    """One job of a sweep; a failure is recorded in its dir (failed.json) and logged, and the sweep goes on."""
    from evalrun.errors import DirectoryTaken
    from evalrun.runs import record_failure

    try:
        run(cfg, run_dir, checked=checked)
        return True
    except Exception as exc:  # noqa: BLE001 - any job's failure: the others still run, as in the CLI
        if not isinstance(exc, EvalrunError):
            log.exception("job %s failed", run_dir.name)
        else:
            log.error("job %s failed: %s", run_dir.name, exc)
        if not isinstance(exc, DirectoryTaken) or Path(str(exc.directory)) != run_dir:
            record_failure(run_dir, exc)
        return False


def load_sweep(sweep_dir: str | Path) -> SweepResult:
    """A finished sweep directory (written by the CLI or by :func:`sweep`)."""
    from evalrun.errors import ConfigError
    from evalrun.runs import find_run_dirs

    path = Path(sweep_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"sweep dir {str(path)!r} " + ("is a file, not a folder" if path.exists() else
                                                        "does not exist") + "; give the folder a sweep wrote")
    if not find_run_dirs(path):
        raise ConfigError(f"sweep dir {str(path)!r} holds no runs (no job folder below it); give the folder "
                          f"a sweep wrote")
    return SweepResult(path)
