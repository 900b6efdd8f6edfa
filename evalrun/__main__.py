"""Entry point: ``evalrun [overrides]`` or ``python -m evalrun [overrides]`` (a Hydra app named evalrun).

Thin on purpose: the work is ``evalrun.run.run``; this turns a user's mistake into one line on
stderr and a non-zero exit, and records a failed job in its directory so the sweep summary
lists it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

import evalrun.devices  # noqa: F401  (registers ${evalrun_n_devices:N}, which sizes the launcher presets)
from evalrun.errors import DirectoryTaken, EvalrunError
from evalrun.jobdirs import job_dirname
from evalrun.paths import CONF_DIR
from evalrun.runs import FAILED_FILE, record_failure

log = logging.getLogger("evalrun")

OmegaConf.register_new_resolver("evalrun_dirname", job_dirname, replace=True)


def experiment_sweep(hydra_cfg: Any) -> str | None:
    """An experiment file's sweep (``hydra.sweeper.params``) as ``key=values, ...``, or None. Only with an
    experiment: ``debug=smoke`` sets params too, to shrink an experiment's sweep, not to make one."""
    params = hydra_cfg.sweeper.get("params") if hydra_cfg.get("sweeper") else None
    if not params or not hydra_cfg.runtime.choices.get("experiment"):
        return None
    return ", ".join(f"{k}={v}" for k, v in params.items())


def sweep_params(hydra_cfg: Any) -> dict[str, Any]:
    """``hydra.sweeper.params`` as a sweep applies them. ``debug=smoke`` sets params to shrink an experiment's
    sweep (one seed, steps 2 and 3), not to make one: without an experiment, only params given on the
    command line apply (``scheduler=ddim,dpm debug=smoke -m`` stays two jobs)."""
    params = dict(hydra_cfg.sweeper.get("params") or {}) if hydra_cfg.get("sweeper") else {}
    choices = hydra_cfg.runtime.choices
    if choices.get("experiment") or not choices.get("debug"):
        return params
    given = {str(o).split("=", 1)[0].lstrip("+~").removeprefix("hydra.sweeper.params.")
             for o in hydra_cfg.overrides.get("hydra") or ()}
    return {k: v for k, v in params.items() if k in given}


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from evalrun.devices import claim_for_job

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    try:
        from evalrun.added_keys import check_added_keys
        from evalrun.override_keys import check_optional_choices

        check_optional_choices(hydra_cfg)
        check_added_keys(hydra_cfg.overrides.task, cfg)
        unrun = experiment_sweep(hydra_cfg)
        if hydra_cfg.mode != RunMode.MULTIRUN and unrun:  # an experiment's sweep, run as a single job
            log.warning("this config sweeps %s (hydra.sweeper.params); without -m only one run is made, with its "
                        "defaults: add -m to run the sweep", unrun)
        # First, before anything touches torch.cuda: a parallel launcher's worker takes a GPU of its own.
        claim_for_job(cfg.device, hydra_cfg)
        from evalrun.merge import try_merge
        from evalrun.run import run
        from evalrun.shards import sharded

        run(cfg, run_dir)
        if sharded(cfg):
            try_merge(run_dir)  # the last shard of a configuration to finish merges it
    except EvalrunError as exc:
        # A taken directory is another configuration's: nothing is written there. The job's own directory
        # records the failure when it was another one that was taken (a shard's merged run dir).
        if not isinstance(exc, DirectoryTaken) or Path(str(exc.directory)) != run_dir:
            record_failure(run_dir, exc)
        # One clear line on stderr, not a traceback: these are mistakes the user can fix.
        # The job's log file gets it too (the console handler would print it twice).
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (exc,), None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        print(f"evalrun: error: {exc}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # In a sweep, fail this job only: Hydra runs the others, then exits non-zero
            # (SystemExit would stop the whole sweep at the first bad job).
            raise
        sys.exit(2)
    except Exception as exc:
        record_failure(run_dir, exc)
        raise


def cli() -> None:
    """Console-script and ``python -m evalrun`` entry."""
    from evalrun.override_keys import check_command_line
    from evalrun.yaml_loader import readable_yaml_errors

    problem = check_command_line(sys.argv[1:])  # before Hydra: one line naming the fix
    if problem:
        print(f"evalrun: error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        with readable_yaml_errors():  # a config file that is not YAML: one line, not Hydra's stack
            main()
    except KeyboardInterrupt:  # Ctrl-C: a line, not torch's and diffusers' stack, and how to go on
        print("\nevalrun: interrupted; every finished image and run is kept: run the same command again to resume",
              file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
