"""Reading what runs wrote: the one loader the summary, the report and the merge share.

A run directory is complete when it holds ``run.json`` (status complete) and ``metrics.csv``;
a job that failed leaves ``failed.json`` with its error's first line; anything else that
Hydra started (``.hydra/``) is unfinished.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)
RUN_FILE = "run.json"
FAILED_FILE = "failed.json"
# Config columns that only describe another key (the class ``scheduler=ddim`` names, the folder of
# ``model=sd15``): a report labels configurations by the key, not by both. Runs declare them in
# run.json (``derived_columns``); this is also what runs written before the declaration meant.
DERIVED_COLUMNS = {"model_path": "model", "pipeline": "model", "model_weights_sha256": "model", "guidance": "model",
                   "scheduler_class": "scheduler", "scheduler_kwargs": "scheduler", "prompts_source": "prompts",
                   "prompts_filter": "prompts", "prompts_sha256": "prompts", "comparable_to_published": "protocol",
                   "protocol_departures": "protocol", "images_sha256": "model"}


# Folders that hold a run's contents, never another run: not walked (a run's images/ can hold 50,000 files).
NOT_RUNS = {"images", "report", "features", ".hydra", ".submitit", "__pycache__"}
MARKERS = (RUN_FILE, FAILED_FILE, ".hydra", "shard.json")


def check_sweep_dir(sweep_dir: Path) -> None:
    """Raise a one-line :class:`~evalrun.errors.EvalrunError` unless ``sweep_dir`` is a folder."""
    from evalrun.errors import EvalrunError

    if Path(sweep_dir).is_dir():
        return
    what = "is a file, not a folder" if Path(sweep_dir).exists() else "does not exist"
    raise EvalrunError(f"sweep dir {sweep_dir} {what}; give a sweep's folder (its hydra.sweep.dir) or a run's folder")


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs: those with Hydra's ``.hydra/`` (started), ``run.json`` (finished), ``failed.json`` or
    ``shard.json``, anywhere under ``sweep_dir`` (several sweeps can share a parent). A finished or
    failed run's own dir (a single run, a scored image folder) is that one run."""
    import os

    sweep_dir = Path(sweep_dir)
    if any((sweep_dir / name).is_file() for name in (RUN_FILE, FAILED_FILE)):
        return [sweep_dir]
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        here = Path(root)
        if here != sweep_dir and any(m in files or m in dirs for m in MARKERS):
            found.append(here)
        dirs[:] = [d for d in dirs if d not in NOT_RUNS]
    return sorted(found)


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """``run.json`` of a complete run, plus its ``metrics.csv`` row under ``"row"``; None if unfinished."""
    from evalrun.results import read_json, read_row_csv

    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists() or not (run_dir / "metrics.csv").exists():
        return None
    try:
        record = read_json(run_dir / RUN_FILE)
    except ValueError:
        return None
    if record.get("status") != "complete":
        return None
    # Plain Python values (not numpy scalars), so an entry survives a JSON round trip unchanged.
    try:
        record["row"] = read_row_csv(run_dir / "metrics.csv")
    except (ValueError, IndexError) as exc:  # emptied or cut short (a full disk, a hand edit): not this run's row
        from evalrun.errors import first_line

        log.warning("%s is unreadable (%s): its run is left out; delete %s to compute it again",
                    run_dir / "metrics.csv", first_line(exc, 120), run_dir / RUN_FILE)
        return None
    return record


def record_failure(run_dir: Path, exc: BaseException) -> None:
    """``failed.json`` in a failed job's dir, with its error's first line (the summary lists it; a re-run
    of the job removes it)."""
    from evalrun.errors import first_line
    from evalrun.results import write_json

    try:
        write_json({"status": "failed", "error": f"{type(exc).__name__}: {first_line(exc)}"}, Path(run_dir) / FAILED_FILE)
    except OSError:
        pass


def read_failure(run_dir: Path) -> str | None:
    path = Path(run_dir) / FAILED_FILE
    if not path.exists():
        return None
    try:
        from evalrun.results import read_json

        return str(read_json(path).get("error", "failed"))
    except ValueError:
        return "failed"


def entry(run_dir: Path) -> dict[str, Any]:
    """What the summary needs of one job dir: its finished run, its failure, or that it is a shard/unfinished."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    # One spelling for every status: the index keeps the latest entry per run dir, and a job that failed in a
    # relative sweep dir, then finished, must replace its failed entry.
    named = str(run_dir.resolve())
    if record is not None:
        return {"run_dir": named, "status": "complete", "row": record["row"],
                "config_columns": record["config_columns"], "metric_columns": record["metric_columns"],
                "columns": record.get("columns", {}), "seed_columns": record.get("seed_columns", []),
                "derived_columns": record.get("derived_columns", {c: k for c, k in DERIVED_COLUMNS.items()
                                                                   if c in record["config_columns"]}),
                "smoke": bool(record.get("provenance", {}).get("smoke_model_random_weights"))}
    error = read_failure(run_dir)  # first: a shard whose merge failed is a failed job (a re-run clears it)
    if error is not None:
        return {"run_dir": named, "status": "failed", "error": error}
    if (run_dir / "shard.json").exists():
        return {"run_dir": named, "status": "shard"}  # a shard is not a run: its merge is
    return {"run_dir": named, "status": "missing"}


def collect(sweep_dirs: Iterable[Path]) -> list[dict[str, Any]]:
    return [entry(d) for sweep_dir in sweep_dirs for d in find_run_dirs(Path(sweep_dir))]


FOLLOWS_SEED = "(follows seed)"  # a seed setting's cell where other runs set it explicitly


def frame(entries: Iterable[dict[str, Any]]):
    """One row per complete run: config and metric columns plus ``run_dir``.

    ``df.attrs`` carries ``config_columns``, ``metric_columns``, ``columns`` (each metric column's
    declaration from run.json: direction, kind, format, depends_on), ``seed_columns`` (config
    columns that follow the seed), ``smoke`` (run dirs of random-weight models), ``shards`` (shard dirs:
    their configuration counts once merged), ``missing`` (job dirs without a finished run) and
    ``failed`` ({run dir: first line of its error}).
    """
    import pandas as pd

    rows, config_cols, metric_cols, declared, seed_cols, derived = [], [], [], {}, ["seed"], {}
    missing, failed, smoke, shards, follows = [], {}, [], [], []
    for e in entries:
        if e["status"] == "shard":
            shards.append(e["run_dir"])
        elif e["status"] == "failed":
            failed[e["run_dir"]] = e["error"]
        elif e["status"] == "missing":
            missing.append(e["run_dir"])
        else:
            rows.append({**e["row"], "run_dir": e["run_dir"]})
            follows.append(set(e["seed_columns"]))
            config_cols += [c for c in e["config_columns"] if c not in config_cols]
            metric_cols += [c for c in e["metric_columns"] if c not in metric_cols]
            declared.update(e["columns"])
            seed_cols += [c for c in e["seed_columns"] if c not in seed_cols]
            derived.update(e.get("derived_columns", {}))
            if e["smoke"]:
                smoke.append(e["run_dir"])
    # A setting that follows the seed in some runs (kid.seed left null) and is set in others (kid.seed=5):
    # a configuration key, whose followers all read FOLLOWS_SEED, so explicit values are never averaged as seeds.
    for col in [c for c in seed_cols[1:] if any(c in row and c not in f for row, f in zip(rows, follows))]:
        seed_cols.remove(col)
        for row, f in zip(rows, follows):
            if col in f:
                row[col] = FOLLOWS_SEED
    result = pd.DataFrame(rows)
    result.attrs.update(config_columns=config_cols, metric_columns=metric_cols, columns=declared, seed_columns=seed_cols,
                        derived_columns=derived, smoke=smoke, missing=missing, failed=failed, shards=shards)
    return result


def without_attrs(runs):
    """``runs`` (a :func:`frame`) without ``attrs``, for column work: pandas deep-copies ``attrs`` into
    every frame and series an operation returns, which was 40% of a summary's time."""
    bare = runs.copy(deep=False)
    bare.attrs = {}
    return bare


def run_order(run_dir: str) -> tuple[str, ...]:
    """Sort key of a run dir, in the order :func:`find_run_dirs` lists them (path parts, not characters)."""
    return tuple(Path(run_dir).parts)


def drop_repeated_runs(runs, config_columns: Sequence[str], warn: bool = True):
    """``runs`` (a :func:`frame`) with each run counted once, as (runs, run dirs left out).

    A run is counted once when its run dir was read twice (overlapping sweep dirs; left out silently)
    or when an earlier run has the same value in every config column, the seed included: two job dirs
    of one configuration and seed (a sweep that varied a setting that is not a result column, or one
    sweep run twice into a sweep dir with overrides spelled differently) are one seed, not two. The
    earlier run is kept; ``warn`` logs the repeats. The summary and the report both count runs here."""
    if runs.empty:
        return runs, []
    data = without_attrs(runs)
    cols = [c for c in config_columns if c in data.columns]
    same_dir = data.duplicated(subset="run_dir")
    repeats = (data.duplicated(subset=cols) if cols else same_dir) & ~same_dir
    if not (same_dir.any() or repeats.any()):
        return runs, []
    repeated = data.loc[repeats, "run_dir"].tolist()
    if repeated and warn:
        log.warning("%d run(s) repeat the config and seed of an earlier one and are counted once: %s",
                    len(repeated), ", ".join(repeated))
    kept = runs[~(same_dir | repeats).to_numpy()].reset_index(drop=True)
    kept.attrs = dict(runs.attrs)
    return kept, repeated


def load_runs(sweep_dirs: Iterable[Path]):
    """Every job dir under ``sweep_dirs`` read from disk, as :func:`frame` describes."""
    return frame(collect(sweep_dirs))


def fingerprint(sweep_dir: Path) -> str:
    """Changes whenever a run under ``sweep_dir`` finishes, fails or is rewritten (paths, sizes, mtimes of
    the files a report reads): a report built from an unchanged fingerprint need not be rebuilt."""
    from evalrun.hashing import stable_hash
    from evalrun.version import __version__

    stamp = []
    for run_dir in find_run_dirs(Path(sweep_dir)):
        for name in (RUN_FILE, FAILED_FILE, "per_image.csv"):
            path = run_dir / name
            if path.exists():
                st = path.stat()
                stamp.append((str(path), st.st_size, st.st_mtime_ns))
    return stable_hash({"runs": stamp, "evalrun": __version__}, length=32)
