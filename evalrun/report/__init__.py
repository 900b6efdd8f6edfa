"""Sweep results as paper tables, plots, paired comparisons and a browsable gallery.

Everything is rebuilt from what the runs wrote to disk (``run.json``, ``metrics.csv``,
``per_image.csv``, ``images/``), so ``python -m evalrun.report SWEEP_DIR...`` can be re-run
at any time; the Hydra multirun callback calls :func:`build_report`. Artefacts go to
``<first sweep dir>/report/`` unless ``out_dir`` says otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from evalrun.errors import EvalrunError

log = logging.getLogger(__name__)
REPORT_DIR = "report"


def is_spread(metric: str) -> bool:
    """``kid_std``, ``is_std``...: spreads that come with a score, not scores themselves."""
    return str(metric).endswith("_std")


def same_partition(a: pd.Series, b: pd.Series) -> bool:
    """True when ``a`` and ``b`` group the rows identically (e.g. ``scheduler`` and ``scheduler_class``)."""
    a, b = a.astype(str), b.astype(str)
    return bool(a.groupby(b).nunique().max() == 1 and b.groupby(a).nunique().max() == 1)


def seed_columns(runs: pd.DataFrame, config_columns: Sequence[str]) -> list[str]:
    """``seed`` and config columns resolved from it (e.g. ``kid.seed: null`` recorded as the run's seed)."""
    if "seed" not in runs:
        return []
    if runs["seed"].astype(str).nunique() < 2:
        return ["seed"]
    return ["seed"] + [c for c in config_columns if c != "seed" and c in runs and same_partition(runs[c], runs["seed"])]


def varying_keys(runs: pd.DataFrame, config_columns: Sequence[str]) -> list[str]:
    """Config columns that vary across runs, leaving out the seed, its aliases and aliases of an earlier key."""
    keys: list[str] = []
    seeds = seed_columns(runs, config_columns)
    for col in config_columns:
        if col in seeds or col not in runs or runs[col].astype(str).nunique() < 2:
            continue
        if not any(same_partition(runs[col], runs[k]) for k in keys):
            keys.append(col)
    return keys


def value_text(value: Any) -> str:
    """A config value as a label: ``2`` not ``2.0``, ``–`` for missing."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _setting_of(column: str, metric: str) -> bool:
    """Whether config column ``<name>.<key>`` is a setting of metric column ``metric``: ``clip_score``
    (clip_score.*), ``kid_mean`` (kid.*), ``is_mean`` (inception_score.*, by initials)."""
    name = column.split(".", 1)[0]
    initials = "".join(word[0] for word in name.split("_") if word)
    return metric == name or metric.startswith(name + "_") or (len(initials) > 1 and metric.startswith(initials + "_"))


@dataclass
class Sweep:
    """The complete runs of one or more sweep dirs, and what the runs say about their columns."""

    runs: pd.DataFrame
    config_columns: list[str]
    metric_columns: list[str]
    higher_is_better: dict[str, bool]
    keys: list[str]
    sweep_dirs: list[Path]
    missing: list[str] = field(default_factory=list)
    _per_image: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def seed_columns(self) -> list[str]:
        return seed_columns(self.runs, self.config_columns)

    def direction(self, metric: str) -> bool | None:
        """True/False from ``run.json``'s ``higher_is_better``; None for unknown metrics and spreads."""
        if is_spread(metric) or metric not in self.higher_is_better:
            return None
        return bool(self.higher_is_better[metric])

    @property
    def scores(self) -> list[str]:
        """Metric columns with at least one value, spreads left out."""
        return [m for m in self.metric_columns
                if m in self.runs and not is_spread(m) and pd.to_numeric(self.runs[m], errors="coerce").notna().any()]

    @property
    def row_keys(self) -> list[str]:
        """The keys that tell configurations apart; a constant label column when only seeds vary."""
        if self.keys:
            return list(self.keys)
        return [next((c for c in ("model", "scheduler") if c in self.runs), self.config_columns[0])]

    def constants(self) -> dict[str, str]:
        """Config columns with one value across all runs (model, CLIP model, resolution...)."""
        return {c: value_text(self.runs[c].iloc[0]) for c in self.config_columns
                if c in self.runs and c not in self.seed_columns and self.runs[c].astype(str).nunique() == 1}

    def settings_note(self, metrics: Iterable[str]) -> str:
        """The constant settings of ``metrics`` (``clip_score.clip_model=...``), for table captions."""
        consts = self.constants()
        parts = [f"{c}={v}" for m in metrics for c, v in consts.items() if "." in c and _setting_of(c, m)]
        return "; ".join(dict.fromkeys(parts))


    def per_image(self) -> pd.DataFrame:
        """Every run's ``per_image.csv`` with ``run_dir`` and the sweep keys added (read once)."""
        if self._per_image is None:
            frames = []
            for run_dir in self.runs["run_dir"]:
                path = Path(run_dir) / "per_image.csv"
                if path.exists():
                    frame = pd.read_csv(path, dtype={"prompt_id": str, "prompt": str, "category": str, "challenge": str})
                    frames.append(frame.drop(columns=[k for k in self.keys if k in frame]).assign(run_dir=run_dir))
            if not frames:
                self._per_image = pd.DataFrame(columns=["run_dir"])
            else:
                merged = pd.concat(frames, ignore_index=True)
                self._per_image = merged.merge(self.runs[["run_dir", *self.keys]], on="run_dir", how="left")
        return self._per_image

    def per_image_metrics(self) -> list[str]:
        """Score metrics that also have one value per image (paired by prompt and seed)."""
        frame = self.per_image()
        return [m for m in self.scores if m in frame and pd.to_numeric(frame[m], errors="coerce").notna().any()]


def load_sweep(sweep_dirs: Sequence[Path | str]) -> Sweep:
    """Complete runs under ``sweep_dirs`` (merged); a run found twice counts once."""
    from evalrun.aggregate import load_runs

    dirs = [Path(d) for d in sweep_dirs]
    for d in dirs:
        if not d.is_dir():
            raise EvalrunError(f"sweep dir {d} does not exist")
    runs = load_runs(dirs)
    attrs = dict(runs.attrs)
    if runs.empty:
        raise EvalrunError(f"no complete runs (run.json + metrics.csv) under {', '.join(map(str, dirs))}")
    runs = runs.drop_duplicates(subset="run_dir").reset_index(drop=True)
    config_columns = [c for c in attrs["config_columns"] if c in runs]
    same = runs.duplicated(subset=config_columns, keep="first")
    if same.any():
        log.warning("%d run(s) repeat the config and seed of an earlier one and are counted once: %s",
                    int(same.sum()), ", ".join(runs.loc[same, "run_dir"]))
        runs = runs[~same].reset_index(drop=True)
    if attrs.get("missing"):
        log.warning("%d job dir(s) have no complete run and are left out: %s",
                    len(attrs["missing"]), ", ".join(attrs["missing"]))
    return Sweep(runs=runs, config_columns=config_columns,
                 metric_columns=[m for m in attrs["metric_columns"] if m in runs],
                 higher_is_better=dict(attrs.get("higher_is_better", {})),
                 keys=varying_keys(runs, config_columns), sweep_dirs=dirs, missing=list(attrs.get("missing", [])))


def _check_names(names: Iterable[str], valid: Sequence[str], what: str) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise EvalrunError(f"unknown {what} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")


def build_report(sweep_dirs: Sequence[Path | str] | Path | str, out_dir: Path | str | None = None, *,
                 rows: Sequence[str] | None = None, cols: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, compare: Sequence[Sequence[Any]] | None = None,
                 x: str | None = None, hue: Sequence[str] | None = None, seed: int = 0,
                 resamples: int = 10_000, formats: dict[str, str] | None = None,
                 plots: bool = True, gallery: bool = True) -> dict[str, list[Path]]:
    """Write tables, comparisons, plots and the gallery for ``sweep_dirs``; returns the paths by kind.

    ``rows``/``cols``: config keys of the pivot tables (default: the keys that vary, ``steps``
    as columns). ``metrics``: metrics to tabulate, plot and compare (default: every score).
    ``compare``: pairs of selectors (``"model=sd14"``, ``{"model": "sd15"}``); default: each
    level of every varying key against the first. ``seed``/``resamples``: the bootstrap.
    ``formats``: per-metric format specs (``{"fid": ".1f"}``).
    """
    from evalrun.report import compare as cmp
    from evalrun.report import tables
    from evalrun.report.gallery import write_gallery

    if isinstance(sweep_dirs, (str, Path)):
        sweep_dirs = [sweep_dirs]
    sweep = load_sweep(sweep_dirs)
    out = Path(out_dir) if out_dir is not None else sweep.sweep_dirs[0] / REPORT_DIR
    _check_names([*(rows or []), *(cols or []), *(hue or []), *([x] if x else [])], sweep.config_columns, "config key")
    metrics = list(metrics) if metrics else sweep.scores
    _check_names(metrics, sweep.metric_columns, "metric")
    formats = dict(formats or {})
    written: dict[str, list[Path]] = {"tables": [], "comparisons": [], "plots": [], "gallery": [], "index": []}

    built = [tables.summary_table(sweep, metrics, formats)]
    row_keys, col_keys = tables.default_pivot_keys(sweep, rows, cols)
    if col_keys:
        built += [tables.pivot_table(sweep, row_keys, col_keys, m, formats) for m in metrics]
    built += tables.breakdown_tables(sweep, [m for m in metrics if m in sweep.per_image_metrics()], formats)
    for table in built:
        written["tables"] += tables.write_table(table, out / "tables")

    pairs = [tuple(p) for p in compare] if compare else (cmp.default_comparisons(sweep) if metrics else [])
    results = []
    for a, b in pairs:
        try:
            results.append(cmp.compare(sweep, a, b, metrics=metrics, seed=seed, resamples=resamples))
        except EvalrunError as exc:
            if compare:
                raise
            log.warning("comparison %s vs %s skipped: %s", a, b, exc)
    if results:
        written["comparisons"] = cmp.write_comparisons(results, out)

    if plots:
        from evalrun.report.plots import plot_sweep

        written["plots"] = plot_sweep(sweep, out / "plots", metrics, x=x, hue=hue)
    if gallery:
        written["gallery"] = [write_gallery(sweep, out / "index.html", built[0], formats)]
    written["index"] = [_write_index(sweep, out, built, results, written)]
    log.info("report: %d files under %s", sum(len(v) for v in written.values()), out)
    return written


def _write_index(sweep: Sweep, out: Path, built: list, results: list, written: dict[str, list[Path]]) -> Path:
    """``report.md``: every table and comparison in one Markdown file, with links to the rest."""
    from evalrun.report import compare as cmp
    from evalrun.report import tables
    from evalrun.results import atomic_write_text

    lines = ["# Sweep report", "", f"Sweeps: {', '.join(str(d) for d in sweep.sweep_dirs)}  ",
             f"Runs: {len(sweep.runs)} complete; keys that vary: {', '.join(sweep.keys) or 'none (seeds only)'}"]
    if sweep.missing:
        lines.append(f"  \nNot complete (left out): {', '.join(sweep.missing)}")
    consts = sweep.constants()
    if consts:
        lines += ["", "Constant settings: " + ", ".join(f"`{k}={v}`" for k, v in consts.items())]
    if written["gallery"]:
        lines += ["", "Gallery: [index.html](index.html)"]
    for table in built:
        lines += ["", tables.to_markdown(table)]
    if results:
        lines += ["", "## Paired comparisons", "", cmp.to_markdown(results)]
    if written["plots"]:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in written["plots"] if p.suffix == ".png"]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
