"""Sweep dir -> ``summary.csv``: runs grouped by every config column but the seed (and the settings
that follow it, as each run's ``run.json`` declares them).

A re-runnable command (``python -m evalrun.aggregate SWEEP_DIR``) that reads what the runs
wrote to disk; the Hydra callback only calls it. Failed jobs are listed in
``failed_runs.csv`` beside the summary (with their error's first line), unfinished ones in the
log, and the command exits non-zero when any job failed.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from evalrun.results import write_csv
from evalrun.runs import load_runs

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.csv"
FAILED_RUNS_FILE = "failed_runs.csv"


def _ci95(values) -> tuple[float, float]:
    """Student-t 95% interval of the mean (NaN with fewer than two values)."""
    from scipy import stats

    values = values.dropna()
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return values.mean() - half, values.mean() + half


def group_keys(runs) -> list[str]:
    """Config columns that define a configuration: all but the seed and the settings that follow it.
    Columns that vary come first: they are what the sweep compared."""
    seeds = set(runs.attrs.get("seed_columns", ["seed"]))
    config_cols = [c for c in runs.attrs["config_columns"] if c in runs.columns and c not in seeds]
    varying = [c for c in config_cols if runs[c].astype(str).nunique(dropna=False) > 1]
    return varying + [c for c in config_cols if c not in varying]


def summarise(runs):
    """Mean, sample std (ddof=1), n and 95% CI of each metric over seeds, per configuration."""
    import pandas as pd

    keys = group_keys(runs)
    metric_cols = [c for c in runs.attrs["metric_columns"] if c in runs.columns]
    out = []
    for group_values, group in runs.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, group_values if isinstance(group_values, tuple) else (group_values,)))
        row["seeds"] = " ".join(str(s) for s in sorted(group["seed"].tolist())) if "seed" in group else ""
        row["n_runs"] = len(group)
        for m in metric_cols:
            values = pd.to_numeric(group[m], errors="coerce")
            low, high = _ci95(values)
            row.update({f"{m}_mean": values.mean(), f"{m}_std": values.std(ddof=1), f"{m}_n": int(values.notna().sum()),
                        f"{m}_ci95_low": low, f"{m}_ci95_high": high})
        out.append(row)
    return pd.DataFrame(out)


def write_failed(sweep_dir: Path, failed: dict[str, str]) -> Path | None:
    """``failed_runs.csv``: each failed job dir with the first line of its error (removed when none failed)."""
    import pandas as pd

    path = Path(sweep_dir) / FAILED_RUNS_FILE
    if not failed:
        path.unlink(missing_ok=True)
        return None
    write_csv(pd.DataFrame([{"run_dir": d, "error": e} for d, e in sorted(failed.items())]), path)
    return path


def write_summary(sweep_dir: Path) -> Path:
    """Write ``summary.csv`` (and ``failed_runs.csv``) into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs([sweep_dir])
    missing, failed = runs.attrs["missing"], runs.attrs["failed"]
    write_failed(sweep_dir, failed)
    if failed:
        log.error("%d job(s) failed (listed in %s): %s", len(failed), sweep_dir / FAILED_RUNS_FILE,
                  "; ".join(f"{Path(d).name}: {e}" for d, e in sorted(failed.items())))
    if missing:
        log.warning("%d job dir(s) have no finished run and are left out of the summary: %s",
                    len(missing), ", ".join(missing))
    if runs.empty:
        raise FileNotFoundError(f"no finished runs (run.json + metrics.csv) under {sweep_dir}")
    path = sweep_dir / SUMMARY_FILE
    summary = summarise(runs)
    write_csv(summary, path)
    log.info("wrote %s (%d runs, %d configurations)", path, len(runs), len(summary))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalrun.aggregate", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="multirun sweep directories")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    status = 0
    for sweep_dir in args.sweep_dirs:
        try:
            print(write_summary(sweep_dir))
        except FileNotFoundError as exc:
            print(f"evalrun.aggregate: error: {exc}", file=sys.stderr)
            return 1
        if (Path(sweep_dir) / FAILED_RUNS_FILE).exists():
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
