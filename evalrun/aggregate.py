"""Sweep dir -> ``summary.csv``: runs grouped by every config column but ``seed``.

A re-runnable command (``python -m evalrun.aggregate SWEEP_DIR``) that reads what the runs
wrote to disk; the Hydra ``on_multirun_end`` callback only calls it. Hydra skips that
callback when any job fails, so after a failed or interrupted sweep run this by hand: it
summarises the finished runs and lists the unfinished ones.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from scipy import stats

from evalrun.results import RUN_FILE, read_json, write_csv

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.csv"
GROUP_EXCLUDE = ("seed",)


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs: those with Hydra's ``.hydra/`` (started) or a ``run.json`` (finished)."""
    sweep_dir = Path(sweep_dir)
    found = {p.parent for p in sweep_dir.rglob(RUN_FILE)} | {p.parent for p in sweep_dir.rglob(".hydra")}
    found.discard(sweep_dir)  # the sweep dir's own .hydra (multirun.yaml) is not a job
    return sorted(found)


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """``run.json`` of a complete run, plus its ``metrics.csv`` row under ``"row"``; None if unfinished."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists() or not (run_dir / "metrics.csv").exists():
        return None
    record = read_json(run_dir / RUN_FILE)
    if record.get("status") != "complete":
        return None
    record["row"] = pd.read_csv(run_dir / "metrics.csv").iloc[0].to_dict()
    return record


def load_runs(sweep_dirs: Iterable[Path]) -> pd.DataFrame:
    """One row per complete run across ``sweep_dirs``: config and metric columns plus ``run_dir``.

    ``df.attrs`` carries ``config_columns``, ``metric_columns``, ``higher_is_better`` and
    ``missing`` (job dirs without a finished run).
    """
    rows, config_cols, metric_cols, direction, missing = [], [], [], {}, []
    for sweep_dir in sweep_dirs:
        for run_dir in find_run_dirs(Path(sweep_dir)):
            record = read_run(run_dir)
            if record is None:
                missing.append(str(run_dir))
                continue
            rows.append({**record["row"], "run_dir": str(run_dir.resolve())})
            config_cols += [c for c in record["config_columns"] if c not in config_cols]
            metric_cols += [c for c in record["metric_columns"] if c not in metric_cols]
            direction.update(record.get("higher_is_better", {}))
    frame = pd.DataFrame(rows)
    frame.attrs.update(config_columns=config_cols, metric_columns=metric_cols, higher_is_better=direction,
                       missing=missing)
    return frame


def _ci95(values: pd.Series) -> tuple[float, float]:
    """Student-t 95% interval of the mean (NaN with fewer than two values)."""
    values = values.dropna()
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return values.mean() - half, values.mean() + half


def _follows_seed(runs: pd.DataFrame, column: str) -> bool:
    """A setting that defaults to the run's seed (e.g. a KID subset seed) varies with it and
    must not split the seed groups."""
    if "seed" not in runs or runs[column].nunique(dropna=False) < 2:
        return False
    return bool((runs[column].astype(str) == runs["seed"].astype(str)).all())


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1), n and 95% CI of each metric over seeds, per configuration."""
    config_cols = [c for c in runs.attrs["config_columns"] if c in runs.columns and c not in GROUP_EXCLUDE
                   and not _follows_seed(runs, c)]
    metric_cols = [c for c in runs.attrs["metric_columns"] if c in runs.columns]
    # Columns that vary across runs come first: they are what the sweep compared.
    varying = [c for c in config_cols if runs[c].nunique(dropna=False) > 1]
    keys = varying + [c for c in config_cols if c not in varying]
    out = []
    for group_values, group in runs.groupby(keys, dropna=False, sort=True):
        row = dict(zip(keys, group_values if isinstance(group_values, tuple) else (group_values,)))
        row["seeds"] = " ".join(str(s) for s in sorted(group["seed"].tolist())) if "seed" in group else ""
        for m in metric_cols:
            values = pd.to_numeric(group[m], errors="coerce")
            low, high = _ci95(values)
            row.update({f"{m}_mean": values.mean(), f"{m}_std": values.std(ddof=1), f"{m}_n": int(values.notna().sum()),
                        f"{m}_ci95_low": low, f"{m}_ci95_high": high})
        out.append(row)
    return pd.DataFrame(out)


def write_summary(sweep_dir: Path) -> Path:
    """Write ``summary.csv`` into ``sweep_dir``; unfinished job dirs are logged and listed."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs([sweep_dir])
    missing = runs.attrs["missing"]
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
    for sweep_dir in args.sweep_dirs:
        try:
            print(write_summary(sweep_dir))
        except FileNotFoundError as exc:
            print(f"evalrun.aggregate: error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
