"""``hydra/sweeper=evalrun`` (the default, conf/hydra/sweeper/evalrun.yaml): Hydra's basic sweeper,
whose jobs' configs come from :class:`evalrun.sweep_configs.SweepConfigLoader`, and which runs every
job of a sweep when one fails.

Kept thin: Hydra imports every module under ``hydra_plugins`` when it scans for plugins, so this
one imports evalrun only once a sweep starts.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, List

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from hydra.types import HydraContext
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class EvalrunSweeper(BasicSweeper):
    """The basic sweeper (``key=a,b`` lists, ``hydra.sweeper.params``, ``max_batch_size``); its check of
    each batch and the launcher it starts read job configs through evalrun's loader."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        from evalrun.sweep_configs import SweepConfigLoader

        loader = SweepConfigLoader(hydra_context.config_loader)
        super().setup(hydra_context=HydraContext(config_loader=loader, callbacks=hydra_context.callbacks),
                      task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        """Hydra 1.3's ``BasicSweeper.sweep``, except that a failed job does not end the sweep: the basic
        sweeper raises the first failure it reads, which skips the batches after it and the end of the
        sweep (summary and report), and prints a traceback for a job that already said what was wrong in
        one line. Here every batch runs; a failure that is not a user's mistake still gets its traceback
        in the log; the summary callback then exits non-zero (``evalrun.callbacks``)."""
        from evalrun.errors import EvalrunError

        params = self._parse_config()
        params.extend(arguments)
        overrides = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(params)
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        self._check_every_job()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, first_job, self._lost = [], 0, 0
        while not self.is_done():
            batch = self.get_job_batch()
            results = self._launched(batch, first_job)
            for result in results:
                if result.status == JobStatus.FAILED and not isinstance(result._return_value, EvalrunError):
                    error = result._return_value
                    log.error("job %s failed", " ".join(result.overrides),
                              exc_info=(type(error), error, error.__traceback__))
            first_job += len(batch)
            returns.append(results)
        import evalrun.callbacks

        evalrun.callbacks.SWEEP_FAILURES = self._lost + sum(r.status == JobStatus.FAILED for rs in returns for r in rs)
        if not self._summary_exits_on_failure():  # nothing after this sweep would exit non-zero: fail here
            failed = [r for rs in returns for r in rs if r.status == JobStatus.FAILED]
            if failed and not self._lost and all(isinstance(r._return_value, EvalrunError) for r in failed):
                # Users' mistakes, each logged in one line by its job: one more line, not Hydra's traceback.
                print(f"evalrun: error: {len(failed)} of {sum(len(rs) for rs in returns)} job(s) failed; each said why "
                      f"above (first: {failed[0]._return_value})", file=sys.stderr)
                raise SystemExit(1)
            for results in returns:  # anything else: as Hydra's sweeper does, with its traceback
                for result in results:
                    _ = result.return_value
            if self._lost:
                raise RuntimeError(f"{self._lost} job(s) of this sweep died before they finished (see the log)")
        return returns

    def _launched(self, batch: List[List[str]], first_job: int) -> List[Any]:
        """The batch's results. A launch that raises (joblib's TerminatedWorkerError, submitit's
        UncompletedJobError: a worker killed, or out of memory) loses the whole batch: its unfinished jobs
        are launched again one at a time (each resumes from its finished images), so only the job that
        dies is lost. A lost job is recorded failed in its dir: the summary lists it and exits non-zero."""
        from evalrun.errors import first_line
        from evalrun.runs import RUN_FILE, record_failure

        try:
            return list(self.launcher.launch(batch, initial_job_idx=first_job))
        except Exception as exc:  # noqa: BLE001 - a worker process died: not a reason to end the sweep
            log.error("a batch of %d job(s) ended with %s: %s", len(batch), type(exc).__name__, first_line(exc))
            error = exc
        results = []
        for i, overrides in enumerate(batch):
            job_dir = self._job_dir(overrides)
            if (job_dir / RUN_FILE).exists():
                continue  # finished before the worker died
            if len(batch) > 1:
                try:
                    results += self.launcher.launch([overrides], initial_job_idx=first_job + i)
                    continue
                except Exception as exc:  # noqa: BLE001
                    error = exc
            self._lost += 1
            record_failure(job_dir, RuntimeError(
                f"its worker process died before the job finished ({type(error).__name__}: killed, or out of "
                f"memory?); re-run the sweep to resume it from its finished images"))
        return results

    def _job_dir(self, overrides: List[str]) -> Path:
        from evalrun.preflight import job_dir

        return job_dir(self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides)))

    def _parse_config(self) -> List[str]:
        """The params that apply (``evalrun.__main__.sweep_params``: debug=smoke's shrink only an experiment's)."""
        from evalrun.__main__ import sweep_params

        return [f"{k}={v}" for k, v in sweep_params(self.config.hydra).items()]

    def _check_every_job(self) -> None:
        """Every job's config composed (Hydra's errors, as its per-batch check raises them) and given the
        checks a run makes before loading weights (``evalrun.preflight``), before the first job starts:
        each job that will fail them is named now, not after the jobs before it have sampled. They still
        run (and fail alone, in a second): a sweep over models x samplers runs the pairs that fit."""
        from evalrun.console import quiet_libraries
        from evalrun.errors import by_problem, jobs_text
        from evalrun.preflight import already_complete, problems

        tic = time.perf_counter()
        quiet_libraries()
        loader = self.hydra_context.config_loader
        jobs = ((list(o), loader.load_sweep_config(self.config, list(o))) for batch in self.overrides for o in batch)
        checked, found = problems((o, cfg) for o, cfg in jobs if not already_complete(cfg))
        n = len(checked)
        grouped = by_problem(found)  # each distinct problem once, with its jobs (a missing model: every job)
        for problem, failing in list(grouped.items())[:10]:
            print(f"evalrun: warning: {jobs_text(failing, one='job ')} will fail: {problem}", file=sys.stderr)
        if found:
            print(f"evalrun: warning: {len(found)} of {n} jobs will fail (listed in failed_runs.csv at the end)"
                  + (f"; {len(grouped) - 10} more problems not shown" if len(grouped) > 10 else ""),
                  file=sys.stderr)
        log.debug("checked the configs of %d jobs in %.2f s", n, time.perf_counter() - tic)

    def _summary_exits_on_failure(self) -> bool:
        """Whether evalrun's summary callback runs after the sweep (it exits 1 when a job failed)."""
        callbacks = self.config.hydra.get("callbacks") or {}
        return any(str(c.get("_target_", "")) == "evalrun.callbacks.SummaryCallback" for c in callbacks.values())
