"""Hydra callback: after a sweep, write the summary (and report) from what the runs wrote.

Only a caller: the work lives in ``evalrun.aggregate`` (and ``evalrun.report``), which
can be re-run by hand. Hydra turns a callback's exception into a warning, so failures
here are logged as errors that say which command to run. When a job failed (evalrun's
sweeper runs the others, then comes here), the sweep exits non-zero once the summary and
report are written, as ``python -m evalrun.aggregate`` does.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)
# Set by evalrun's sweeper once its jobs have run: how many of this sweep's jobs failed (None: another sweeper
# ran them; the failed.json stamps decide). A job refused because its directory holds another configuration's
# results writes nothing there, so failed_runs.csv cannot list it and only the sweeper knows it failed.
SWEEP_FAILURES: int | None = None


class SummaryCallback(Callback):
    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """Refresh summary.csv after every sweep job, so a sweep that fails part-way (Hydra then
        skips on_multirun_end) still leaves a summary of the runs that finished."""
        from hydra.types import RunMode

        import evalrun.aggregate as aggregate

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        try:
            aggregate.refresh(Path(config.hydra.sweep.dir), Path(config.hydra.runtime.output_dir))
        except Exception as exc:  # noqa: BLE001 - a refresh is a convenience; the end of the sweep rewrites it
            log.debug("summary not refreshed: %s", exc)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import time

        global SWEEP_FAILURES
        SWEEP_FAILURES = None

        self._started = time.time()  # failures recorded before this are an earlier sweep's, into the same dir

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import evalrun.aggregate as aggregate

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            aggregate.write_summary(sweep_dir)
        except Exception as exc:  # noqa: BLE001 - Hydra would reduce it to a warning
            from evalrun.shards import SHARD_FILE

            if isinstance(exc, FileNotFoundError) and any(sweep_dir.glob(f"*/{SHARD_FILE}")):
                log.info("no merged run yet (shards of it are still to finish): the summary is written when one is")
            elif isinstance(exc, FileNotFoundError) and (sweep_dir / aggregate.FAILED_RUNS_FILE).exists():
                log.error("%s", aggregate.nothing_finished(sweep_dir))
            else:
                log.error("summary failed (%s); re-run: python -m evalrun.aggregate %s", exc, sweep_dir)
        else:
            self._report(sweep_dir)
        listed = sweep_dir / aggregate.FAILED_RUNS_FILE
        if SWEEP_FAILURES:  # SystemExit, not an exception: Hydra would turn that into a warning and exit 0
            print(f"evalrun: error: {SWEEP_FAILURES} job(s) of this sweep failed (each said why above"
                  + (f"; listed in {listed} unless its directory was another configuration's)" if listed.exists()
                     else ")"), file=sys.stderr)
            sys.exit(1)
        if listed.exists():
            if SWEEP_FAILURES == 0 or not self._failed_now(sweep_dir):
                log.warning("jobs of an earlier sweep into %s failed (listed in %s); every job of this sweep finished",
                            sweep_dir, sweep_dir / aggregate.FAILED_RUNS_FILE)
                return
            # SystemExit, not an exception: Hydra would turn that into a warning and exit 0.
            print(f"evalrun: error: some jobs failed; see {sweep_dir / aggregate.FAILED_RUNS_FILE}", file=sys.stderr)
            sys.exit(1)

    def _failed_now(self, sweep_dir: Path) -> bool:
        """Whether a job of this sweep failed: its failed.json was written since the sweep started."""
        from evalrun.runs import FAILED_FILE, find_run_dirs

        started = getattr(self, "_started", None)
        if started is None:
            return True
        stamps = [(d / FAILED_FILE).stat().st_mtime for d in find_run_dirs(sweep_dir) if (d / FAILED_FILE).exists()]
        return any(stamp >= started - 1 for stamp in stamps)

    @staticmethod
    def _report(sweep_dir: Path) -> None:
        from evalrun.report.build import build_report
        from evalrun.results import atomic_write_text
        from evalrun.runs import fingerprint

        # A re-run of a finished sweep changes no run: its report is already what it would build, unless
        # one of the files that build wrote has gone or changed since.
        stamp = sweep_dir / "report" / ".inputs"
        current = fingerprint(sweep_dir)
        if stamp.exists() and stamp.read_text() == current + _written(stamp.parent):
            log.info("report in %s is up to date (no run changed)", sweep_dir / "report")
            return
        try:
            build_report([sweep_dir])
            atomic_write_text(stamp, current + _written(stamp.parent))
        except Exception as exc:  # noqa: BLE001
            log.error("report failed (%s); re-run: python -m evalrun.report %s", exc, sweep_dir)


def _written(report_dir: Path) -> str:
    """The report's files as built (each one's size, mtime, inode, ctime), for the up-to-date check."""
    from evalrun.hashing import path_stamp

    return "\n" + repr([entry for entry in path_stamp(report_dir) or () if entry[0] != ".inputs"])
