"""Build a report: tables, comparisons, plots and the gallery of one or more sweeps, and ``report.md``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalrun.errors import EvalrunError
from evalrun.report.sweep import Sweep, load_sweep

log = logging.getLogger(__name__)
REPORT_DIR = "report"


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
    import evalrun.report.compare as cmp
    import evalrun.report.tables as tables
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
    import evalrun.report.compare as cmp
    import evalrun.report.tables as tables
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
