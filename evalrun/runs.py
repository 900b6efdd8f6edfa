"""Reading what runs wrote: the one loader the summary, the report and the merge share.

A run directory is complete when it holds ``run.json`` (status complete) and ``metrics.csv``;
a job that failed leaves ``failed.json`` with its error's first line; anything else that
Hydra started (``.hydra/``) is unfinished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

RUN_FILE = "run.json"
FAILED_FILE = "failed.json"


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs: those with Hydra's ``.hydra/`` (started), a ``run.json`` (finished) or ``failed.json``."""
    sweep_dir = Path(sweep_dir)
    found = {p.parent for name in (RUN_FILE, FAILED_FILE, ".hydra") for p in sweep_dir.rglob(name)}
    found.discard(sweep_dir)  # the sweep dir's own .hydra (multirun.yaml) is not a job
    return sorted(d for d in found if "report" not in d.relative_to(sweep_dir).parts)


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """``run.json`` of a complete run, plus its ``metrics.csv`` row under ``"row"``; None if unfinished."""
    import pandas as pd

    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).exists() or not (run_dir / "metrics.csv").exists():
        return None
    try:
        record = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except ValueError:
        return None
    if record.get("status") != "complete":
        return None
    record["row"] = pd.read_csv(run_dir / "metrics.csv").iloc[0].to_dict()
    return record


def read_failure(run_dir: Path) -> str | None:
    path = Path(run_dir) / FAILED_FILE
    if not path.exists():
        return None
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("error", "failed"))
    except ValueError:
        return "failed"


def load_runs(sweep_dirs: Iterable[Path]):
    """One row per complete run across ``sweep_dirs``: config and metric columns plus ``run_dir``.

    ``df.attrs`` carries ``config_columns``, ``metric_columns``, ``columns`` (each metric column's
    declaration from run.json: direction, kind, format, depends_on), ``seed_columns`` (config
    columns that follow the seed), ``smoke`` (run dirs of random-weight models), ``missing``
    (job dirs without a finished run) and ``failed`` ({run dir: first line of its error}).
    """
    import pandas as pd

    rows, config_cols, metric_cols, declared, seed_cols = [], [], [], {}, ["seed"]
    missing, failed, smoke = [], {}, []
    for sweep_dir in sweep_dirs:
        for run_dir in find_run_dirs(Path(sweep_dir)):
            record = read_run(run_dir)
            if record is None:
                error = read_failure(run_dir)
                if error is not None:
                    failed[str(run_dir)] = error
                else:
                    missing.append(str(run_dir))
                continue
            rows.append({**record["row"], "run_dir": str(run_dir.resolve())})
            config_cols += [c for c in record["config_columns"] if c not in config_cols]
            metric_cols += [c for c in record["metric_columns"] if c not in metric_cols]
            declared.update(record.get("columns", {}))
            seed_cols += [c for c in record.get("seed_columns", []) if c not in seed_cols]
            if record.get("provenance", {}).get("smoke_model_random_weights"):
                smoke.append(str(run_dir.resolve()))
    frame = pd.DataFrame(rows)
    frame.attrs.update(config_columns=config_cols, metric_columns=metric_cols, columns=declared, seed_columns=seed_cols,
                       smoke=smoke, missing=missing, failed=failed)
    return frame
