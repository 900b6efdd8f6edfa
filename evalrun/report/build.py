"""Build a report: tables, comparisons, quality-vs-cost fronts, plots and the gallery of one or
more sweeps, and ``report.md`` with every warning a reader must see first."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from evalrun.errors import EvalrunError
from evalrun.report.labels import Labels, check_overrides, load_labels
from evalrun.report.significance import check_bootstrap
from evalrun.report.sweep import Sweep, load_sweep

log = logging.getLogger(__name__)
REPORT_DIR = "report"
FACETS = ("category", "challenge")  # per-image columns the breakdown tables split by (their values: labels)


def _check_names(names: Iterable[str], valid: Sequence[str], what: str) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise EvalrunError(f"unknown {what} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")


def _check_once(option: str, names: Sequence[str] | None) -> None:
    """Refuse a key named twice in one option: pandas cannot group by a column twice (and a table
    split twice by one key would mean nothing)."""
    twice = [n for n in dict.fromkeys(names or []) if list(names or []).count(n) > 1]
    if twice:
        raise EvalrunError(f"{option} names {', '.join(map(repr, twice))} more than once; give each key once")


def _values(sweep: Sweep, key: str) -> list | None:
    """``key``'s values in the runs (a config key) or their images (a facet); None for a metric."""
    if key in sweep.config_columns:
        return list(sweep.runs[key])
    frame = sweep.per_image() if key in FACETS else {}
    return list(frame[key].dropna()) if key in frame else None


def build_report(sweep_dirs: Sequence[Path | str] | Path | str, out_dir: Path | str | None = None, *,
                 rows: Sequence[str] | None = None, cols: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, compare: Sequence[Sequence[Any]] | None = None,
                 x: str | None = None, hue: Sequence[str] | None = None, seed: int = 0,
                 resamples: int = 10_000, formats: dict[str, str] | None = None,
                 labels: Path | str | Mapping[str, Any] | None = None,
                 plots: bool = True, gallery: bool = True) -> dict[str, list[Path]]:
    """Write tables, comparisons, plots and the gallery for ``sweep_dirs``; returns the paths by kind.

    ``rows``/``cols``: config keys of the pivot tables (default: the keys that vary, ``steps``
    as columns). ``metrics``: metrics to tabulate, plot and compare (default: every score).
    ``compare``: pairs of selectors (``"model=sd14"``, ``{"model": "sd15"}``); default: each
    level of every varying key against the first. ``seed``/``resamples``: the bootstrap (of the
    comparisons and of the bold test). ``formats``: per-metric format specs (``{"fid": ".1f"}``).
    ``labels``: display names/units, a YAML file or a mapping (see :mod:`evalrun.report.labels`).
    """
    import evalrun.report.compare as cmp
    import evalrun.report.pareto as pareto
    import evalrun.report.tables as tables
    from evalrun.report.gallery import write_gallery
    from evalrun.report.writers import write_table

    if isinstance(sweep_dirs, (str, Path)):
        sweep_dirs = [sweep_dirs]
    check_bootstrap(resamples, seed)
    overrides = load_labels(labels)
    sweep = load_sweep(sweep_dirs)
    out = Path(out_dir) if out_dir is not None else sweep.sweep_dirs[0] / REPORT_DIR
    check_out_dir(out)
    _check_names([*(rows or []), *(cols or []), *(hue or []), *([x] if x else [])], sweep.config_columns, "config key")
    for option, names in (("--rows", rows), ("--cols", cols), ("--hue", hue)):
        _check_once(option, names)
    metrics = list(dict.fromkeys(metrics)) if metrics else sweep.scores  # a metric named twice is reported once
    _check_names(metrics, sweep.metric_columns, "metric")
    formats = dict(formats or {})
    # A format for no column would be silently unused: most likely a typo (clip=.2f for clip_score).
    _check_names(formats, sweep.metric_columns, "--format metric")
    if sweep.smoke_note():
        log.warning("%s: the report says so in every table, plot and page", sweep.smoke_note())
    for run_dir, error in sweep.failed.items():
        log.warning("failed job, left out of the report: %s: %s", run_dir, error)
    check_overrides(overrides, [*sweep.config_columns, *sweep.metric_columns, *FACETS], lambda key: _values(sweep, key))
    names = Labels(overrides=overrides, declared=dict(sweep.columns))
    options = {"labels": names, "seed": seed, "resamples": resamples}
    written: dict[str, list[Path]] = {"tables": [], "comparisons": [], "pareto": [], "plots": [], "gallery": [],
                                      "index": []}
    # Everything a user can get wrong is refused before the first file is written (a refused --compare or
    # --x left the tables rewritten and unlisted, mixing two builds in the folder).
    if plots:
        from evalrun.report.plots import plot_axis, plot_sweep

        plot_axis(sweep, x)
    pairs = [tuple(p) for p in compare] if compare else (cmp.default_comparisons(sweep) if metrics else [])
    results = []
    for a, b in pairs:
        try:
            results.append(cmp.compare(sweep, a, b, metrics=metrics, seed=seed, resamples=resamples))
        except EvalrunError as exc:
            if compare:
                raise
            log.warning("comparison %s vs %s skipped: %s", a, b, exc)

    costs = [c for c in sweep.costs if c not in metrics]
    built = [tables.summary_table(sweep, metrics, formats, costs=costs, **options)]
    row_keys, col_keys = tables.default_pivot_keys(sweep, rows, cols)
    if col_keys:
        built += [tables.pivot_table(sweep, row_keys, col_keys, m, formats, **options) for m in metrics]
    built += tables.breakdown_tables(sweep, [m for m in metrics if m in sweep.per_image_metrics()], formats,
                                     **options)
    for table in built:
        written["tables"] += write_table(table, out / "tables")

    if results:
        written["comparisons"] = cmp.write_comparisons(results, out, names, sweep.smoke_note())

    fronts = pareto.cost_quality_frames(sweep, metrics, sweep.costs)
    if fronts:
        written["pareto"] = pareto.write_pareto(fronts, out)
    if plots:
        written["plots"] = plot_sweep(sweep, out / "plots", metrics, x=x, hue=hue, labels=names)
    provenance = sweep.provenance_differences()
    for label, diff in provenance.items():
        log.warning("runs averaged together differ in provenance (%s): %s", label, "; ".join(diff))
    if gallery:
        written["gallery"] = write_gallery(sweep, out / "index.html", built[0], formats, provenance)
    written["index"] = [_write_index(sweep, out, built, results, fronts, provenance, written, names)]
    _remove_stale(out, [p for paths in written.values() for p in paths])
    log.info("report: %d files under %s", sum(len(v) for v in written.values()), out)
    return written


def check_out_dir(out: Path) -> None:
    """Raise a one-line :class:`EvalrunError` when ``out``, or a folder above it, is a file: a report is a folder."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == out else f"is under {path}, which is a file"
                raise EvalrunError(f"--out {out} {what}, not a folder; give a folder for the report "
                                   f"(it is created if missing)")
            return


def _remove_stale(out: Path, written: list[Path]) -> None:
    """Delete what the previous build of this report wrote and this one did not (a comparison of runs
    since deleted, plots after ``--no-plots``, the gallery after ``--no-gallery``), so no file in the
    folder shows numbers the report no longer stands behind. Only files listed in the folder's
    ``.report_files`` (written by evalrun) are ever deleted: ``--out`` may hold a user's own files."""
    import json

    from evalrun.results import atomic_write_text

    listing, root = out / ".report_files", out.resolve()
    now = sorted({p.resolve().relative_to(root).as_posix() for p in written if root in p.resolve().parents})
    try:
        before = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = []
    for rel in set(before if isinstance(before, list) else []) - set(now):
        stale = (out / str(rel)).resolve()
        if root in stale.parents and stale.is_file():
            stale.unlink()
            log.info("removed %s: the previous report's, not written this time", stale)
            for folder in stale.parents:  # a folder emptied by it (plots/, tables/) goes too
                if folder == root or any(folder.iterdir()):
                    break
                folder.rmdir()
    atomic_write_text(listing, json.dumps(now, indent=0) + "\n")


def warnings_markdown(sweep: Sweep, provenance: Mapping, labels: Labels) -> list[str]:
    """What a reader must see before any number: smoke model, mixed provenance, failed and unfinished jobs."""
    from evalrun.report.provenance import describe

    lines: list[str] = []
    if sweep.smoke_note():
        lines += ["", f"> **{sweep.smoke_note()}.** These runs used a smoke model with random weights, made to "
                      "test the pipeline; no number in this report says anything about a real model."]
    if provenance:
        lines += ["", "> **Runs averaged together differ in provenance** (library versions, device, scheduler "
                      "config or weights); their means mix these:"]
        for label, diff in provenance.items():
            name = ", ".join(f"{labels(k)}={labels.value(k, v)}" for k, v in zip(sweep.row_keys, label))
            lines.append(f"> - {name}: " + "; ".join(f"`{d}`" for d in describe(diff)))
    if sweep.failed:
        lines += ["", f"**Failed jobs ({len(sweep.failed)}), left out; the report uses the finished runs:**", ""]
        lines += [f"- `{d}`: {error}" for d, error in sweep.failed.items()]
    if sweep.missing:
        lines += ["", f"Not complete (left out): {', '.join(sweep.missing)}"]
    return lines


def _write_index(sweep: Sweep, out: Path, built: list, results: list, fronts: list, provenance: Mapping,
                 written: dict[str, list[Path]], labels: Labels) -> Path:
    """``report.md``: warnings first, then every table, comparison and front, with links to the rest."""
    import evalrun.report.compare as cmp
    import evalrun.report.pareto as pareto
    from evalrun.report.writers import to_markdown
    from evalrun.results import atomic_write_text

    varying = ", ".join(f"{labels(k)} (`{k}`)" for k in sweep.keys) or "none (seeds only)"
    if sweep.moves_with:  # confounded with a key: the tables' rows are labelled by the key alone
        varying += "; varying with them (one value per value of the key): " + ", ".join(
            f"{labels(c)} (`{c}`, with `{k}`)" for c, k in sweep.moves_with.items())
    lines = ["# Sweep report", *warnings_markdown(sweep, provenance, labels), "",
             f"Sweeps: {', '.join(str(d) for d in sweep.sweep_dirs)}  ",
             f"Runs: {len(sweep.runs)} complete; keys that vary: {varying}"]
    consts = sweep.constants()
    if consts:
        lines += ["", "Constant settings: " + ", ".join(f"`{k}={v}`" for k, v in consts.items())]
    if written["gallery"]:
        lines += ["", "Gallery: [index.html](index.html)"]
    for table in built:
        lines += ["", to_markdown(table)]
    if results:
        lines += ["", "## Paired comparisons", "", cmp.to_markdown(results, labels)]
    if fronts:
        lines += ["", "## Quality vs cost", "", pareto.to_markdown(fronts, sweep.row_keys, labels),
                  "All points: [pareto.csv](pareto.csv)"]
    if written["plots"]:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in written["plots"] if p.suffix == ".png"]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
