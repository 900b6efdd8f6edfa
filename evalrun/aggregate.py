"""Sweep dir -> ``summary.csv``: runs grouped by every config column but the seed (and the settings
that follow it, as each run's ``run.json`` declares them).

A re-runnable command (``python -m evalrun.aggregate SWEEP_DIR``) that reads what the runs
wrote to disk; the Hydra callback only calls it. A run that repeats an earlier run's config and seed
counts once, as in the report (:func:`evalrun.runs.drop_repeated_runs`). Failed jobs are listed in
``failed_runs.csv`` beside the summary (with their error's first line), unfinished ones in the
log, and the command exits non-zero when any job failed.

After each sweep job the summary is refreshed incrementally: the job appends its own entry to
the sweep's index (``.runs.jsonl``) and the summary is rebuilt from that one file, not by
re-reading every run (which made a sweep quadratic). Parallel workers finish jobs at the same
moment, so whoever writes the summary checks afterwards whether the set of runs grew while it
was writing, and writes again if so: the last writer always covers every run finished before
it, without a lock (locks are unreliable on the network file systems clusters share).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from evalrun.errors import EvalrunError
from evalrun.results import write_csv
from evalrun.runs import check_sweep_dir, collect, drop_repeated_runs, entry, frame, run_order, without_attrs

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.csv"
FAILED_RUNS_FILE = "failed_runs.csv"
INDEX_FILE = ".runs.jsonl"


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
    data = without_attrs(runs)
    varying = [c for c in config_cols if _varies(data[c])]
    return varying + [c for c in config_cols if c not in varying]


def _varies(column) -> bool:
    """Whether a column holds more than one value as text (what astype(str).nunique counts), without a
    pandas call per column."""
    return len({str(v) for v in column.tolist()}) > 1


def configurations(runs) -> tuple[list[str], list]:
    """(group keys, [(key values, runs of that configuration)]): grouped once for the summary and the
    provenance check."""
    keys = group_keys(runs)
    return keys, list(without_attrs(runs).groupby(keys, dropna=False, sort=True))


def summarise(runs, grouped: tuple[list[str], list] | None = None):
    """Mean, sample std (ddof=1), n and 95% CI of each metric over seeds, per configuration."""
    import pandas as pd

    keys, groups = grouped or configurations(runs)
    metric_cols = [c for c in runs.attrs["metric_columns"] if c in runs.columns]
    out = []
    for group_values, group in groups:
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


def nothing_finished(sweep_dir: Path) -> str:
    """What to say when no job of a sweep finished (write_summary has listed each one's error)."""
    return (f"no job of this sweep finished: nothing to summarise (each one's error is in "
            f"{Path(sweep_dir) / FAILED_RUNS_FILE})")


def write_failed(sweep_dir: Path, failed: dict[str, str]) -> Path | None:
    """``failed_runs.csv``: each failed job dir with the first line of its error (removed when none failed)."""
    import pandas as pd

    path = Path(sweep_dir) / FAILED_RUNS_FILE
    if not failed:
        path.unlink(missing_ok=True)
        return None
    write_csv(pd.DataFrame([{"run_dir": d, "error": e} for d, e in sorted(failed.items())]), path)
    return path


def grouped_errors(problems: dict[str, str]) -> str:
    """Jobs' errors, each distinct one once with the jobs that had it (a missing model failed every job of a
    sweep with one long line, printed once per job)."""
    from evalrun.errors import by_problem, jobs_text

    grouped = by_problem((Path(job).name, error) for job, error in sorted(problems.items()))
    return "; ".join(f"{jobs_text(jobs)}: {error}" for error, jobs in grouped.items())


def _write(sweep_dir: Path, entries: list[dict], quiet: bool) -> Path:
    # In run-dir order whatever order the index has, so a repeated (config, seed) keeps the run the report keeps.
    runs = frame(sorted(entries, key=lambda e: run_order(e["run_dir"])))
    missing, failed = runs.attrs["missing"], runs.attrs["failed"]
    write_failed(sweep_dir, failed)
    if failed and not quiet:
        log.error("%d job(s) failed (listed in %s): %s", len(failed), sweep_dir / FAILED_RUNS_FILE,
                  grouped_errors(failed))
    if missing and not quiet:
        log.warning("%d job dir(s) have no finished run and are left out of the summary: %s",
                    len(missing), ", ".join(missing))
    unmerged = _unmerged(runs.attrs["shards"])
    if unmerged and not quiet:
        log.warning("%d configuration(s) have finished shards but no merged run, left out of the summary: %s (the last "
                    "shard merges; if all have finished, python -m evalrun.merge %s merges them)", len(unmerged),
                    ", ".join(unmerged), sweep_dir)
    if runs.empty:
        raise FileNotFoundError(f"no finished runs (run.json + metrics.csv) under {sweep_dir}")
    runs, _ = drop_repeated_runs(runs, runs.attrs["config_columns"], warn=not quiet)  # as the report counts them
    path = sweep_dir / SUMMARY_FILE
    grouped = configurations(runs)
    summary = summarise(runs, grouped)
    write_csv(summary, path)
    if not quiet:
        warn_mixed_provenance(runs, grouped)
    log.log(logging.DEBUG if quiet else logging.INFO, "wrote %s (%d runs, %d configurations)", path, len(runs),
            len(summary))
    return path


def _unmerged(shard_dirs: list[str]) -> list[str]:
    """The merged run dirs (by name) that shards point to and that hold no complete run."""
    from evalrun.runs import read_run
    from evalrun.shards import merged_dir_of, read_record

    merged = {merged_dir_of(record, Path(d)) for d in shard_dirs if (record := read_record(Path(d))) is not None}
    return sorted(Path(m).name for m in merged if read_run(Path(m)) is None)


def warn_mixed_provenance(runs, grouped: tuple[list[str], list] | None = None) -> dict:
    """Warn about configurations whose runs (seeds) ran with different library versions, devices,
    scheduler config fields or weights: their average mixes things the config columns do not show."""
    from evalrun.report.provenance import describe, differing_fields, read_provenance

    keys, groups = grouped or configurations(runs)
    data = without_attrs(runs)
    shown = {k for k in keys if _varies(data[k])}  # a configuration is named by what the sweep varied
    found = {}
    for label, group in groups:
        if len(group) < 2:
            continue
        diff = differing_fields({d: read_provenance(d) for d in group["run_dir"]})
        if diff:
            name = ", ".join(f"{k}={v}" for k, v in zip(keys, label if isinstance(label, tuple) else (label,))
                             if k in shown) or "all runs"
            found[name] = diff
            log.warning("runs averaged together for %s differ in provenance: %s", name, "; ".join(describe(diff)))
    return found


def write_summary(sweep_dir: Path) -> Path:
    """Read every job dir, rewrite the index, and write ``summary.csv`` (and ``failed_runs.csv``)."""
    sweep_dir = Path(sweep_dir)
    check_sweep_dir(sweep_dir)
    for _ in range(10):
        before = _finish_marks(sweep_dir)
        entries = collect([sweep_dir])
        _write_index(sweep_dir, entries)
        path = _write(sweep_dir, entries, quiet=False)
        if _finish_marks(sweep_dir) == before:
            return path
        log.debug("more runs finished while the summary was written; writing it again")
    return path


def _finish_marks(sweep_dir: Path) -> dict:
    """Each job dir's run.json / failed.json stamps: a job of a parallel launcher that finishes while the
    summary is written changes them (a stat per job, where reading every run again cost more)."""
    from evalrun.runs import FAILED_FILE, RUN_FILE, find_run_dirs

    marks = {}
    for run_dir in find_run_dirs(sweep_dir):
        for name in (RUN_FILE, FAILED_FILE):
            try:
                found = (run_dir / name).stat()
                marks[str(run_dir / name)] = (found.st_mtime_ns, found.st_size, found.st_ino)
            except OSError:
                continue
    return marks


def refresh(sweep_dir: Path, run_dir: Path) -> Path | None:
    """After one sweep job: add its entry to the index, then rebuild the summary from the index."""
    import json

    sweep_dir = Path(sweep_dir)
    entries = [entry(run_dir)]
    if entries[0]["status"] == "shard":  # the shard that merged its configuration: the merged run joins too
        from evalrun.runs import read_run
        from evalrun.shards import merged_dir_of, read_record

        record = read_record(Path(run_dir))
        merged = merged_dir_of(record, Path(run_dir)) if record else Path(run_dir)
        if merged != Path(run_dir) and read_run(merged) is not None:
            entries.append(entry(merged))
    with open(sweep_dir / INDEX_FILE, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(e, default=str) + "\n" for e in entries))
    path = None
    for _ in range(10):
        entries = read_index(sweep_dir)
        try:
            path = _write(sweep_dir, entries, quiet=True)
        except FileNotFoundError:  # only failures so far
            return None
        if len(read_index(sweep_dir)) <= len(entries):
            return path
    return path


def read_index(sweep_dir: Path) -> list[dict]:
    """The index's entries, the last one per run dir (a re-run job appends again)."""
    import json

    latest: dict[str, dict] = {}
    path = Path(sweep_dir) / INDEX_FILE
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
                latest[item["run_dir"]] = item
            except (ValueError, KeyError, TypeError):  # a line cut by a kill: the next full scan repairs it
                continue
    return list(latest.values())


def _write_index(sweep_dir: Path, entries: list[dict]) -> None:
    import json

    from evalrun.results import atomic_write_text

    atomic_write_text(Path(sweep_dir) / INDEX_FILE, "".join(json.dumps(e, default=str) + "\n" for e in entries))


def main(argv: list[str] | None = None) -> int:
    summary = " ".join(__doc__.split("\n\n")[0].split())  # the first paragraph: its first line stops mid-sentence
    parser = argparse.ArgumentParser(prog="python -m evalrun.aggregate", description=summary)
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="multirun sweep directories")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    status = 0
    for sweep_dir in args.sweep_dirs:
        try:
            print(write_summary(sweep_dir))
        except (EvalrunError, FileNotFoundError) as exc:
            print(f"evalrun.aggregate: error: {exc}", file=sys.stderr)
            return 1
        if (Path(sweep_dir) / FAILED_RUNS_FILE).exists():
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
