"""Tables of run metrics: "mean ± std" over seeds with n, best cell per column, as Markdown, LaTeX, CSV.

A :class:`Table` holds the numbers in long form (one row per cell); the writers only format.
Best cells follow each metric's declared direction in ``run.json``; metrics without a
direction, and spreads such as ``kid_std``, get no mark.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from evalrun.errors import EvalrunError
from evalrun.report.sweep import value_text

if TYPE_CHECKING:
    from evalrun.report.sweep import Sweep

log = logging.getLogger(__name__)

# Decimals that suit each metric's usual scale; others get enough digits for their largest value.
DEFAULT_FORMATS = {"fid": ".2f", "kid_mean": ".4f", "clip_score": ".2f", "is_mean": ".2f", "cmmd": ".3f",
                   "clip_directional": ".4f", "fd_dinov2": ".2f", "pick_score": ".3f"}
DASH = "–"
STATS = ["mean", "std", "n", "best", "cell"]


@dataclass
class Table:
    """``stats``: one row per cell: ``row_keys`` values, ``col_keys`` values, ``metric``, ``column``
    (the column label), ``mean``, ``std`` (ddof=1), ``n``, ``best``, ``cell`` (formatted text)."""

    name: str
    title: str
    row_keys: list[str]
    col_keys: list[str]          # empty: one column per metric
    columns: list[str]           # column labels, in order
    headers: dict[str, str]      # column label -> header text
    stats: pd.DataFrame
    note: str = ""

    def cell(self, row: tuple, column: str) -> pd.Series | None:
        hit = self.stats[(self.stats["column"] == column) & _row_mask(self.stats, self.row_keys, row)]
        return None if hit.empty else hit.iloc[0]

    def row_labels(self) -> list[tuple]:
        return list(dict.fromkeys(tuple(r) for r in self.stats[self.row_keys].itertuples(index=False)))


def _row_mask(frame: pd.DataFrame, keys: list[str], row: tuple) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for key, value in zip(keys, row):
        mask &= frame[key].astype(str) == str(value)
    return mask


def auto_format(values: Sequence[float]) -> str:
    """Fixed decimals showing about four significant digits of the largest value."""
    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size == 0:
        return ".3f"
    return f".{int(np.clip(3 - math.floor(math.log10(finite.max())), 0, 6))}f"


def metric_format(metric: str, values: Sequence[float], formats: dict[str, str] | None = None) -> str:
    return (formats or {}).get(metric) or DEFAULT_FORMATS.get(metric) or auto_format(values)


def cell_stats(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for n=1) and n of ``value`` per group of ``keys``."""
    data = frame[keys].assign(_v=pd.to_numeric(frame[value], errors="coerce"))
    grouped = data.groupby(keys, dropna=False, sort=True)["_v"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


def _finish(stats: pd.DataFrame, directions: dict[str, bool | None], fmts: dict[str, str]) -> pd.DataFrame:
    """Mark the best cell(s) of each column (two or more finite cells, known direction) and format cells."""
    stats = stats.copy()
    stats["best"] = False
    for column, idx in stats.groupby("column", sort=False).groups.items():
        means = stats.loc[idx, "mean"]
        higher = directions.get(column)
        if higher is None or means.notna().sum() < 2:
            continue
        target = means.max() if higher else means.min()
        stats.loc[idx, "best"] = means == target
    uniform_n = stats["n"].nunique() <= 1
    stats["cell"] = [format_cell(r.mean, r.std, r.n, fmts[r.column], show_n=not uniform_n)
                     for r in stats.itertuples(index=False)]
    return stats


def format_cell(mean: float, std: float, n: int, fmt: str, show_n: bool = False) -> str:
    if not np.isfinite(mean):
        return DASH
    text = f"{mean:{fmt}} ± {std:{fmt}}" if np.isfinite(std) else f"{mean:{fmt}} ± {DASH}"
    return f"{text} (n={int(n)})" if show_n else text


def _n_note(stats: pd.DataFrame, unit: str = "seeds") -> str:
    ns = sorted({int(n) for n in stats["n"]})
    if not ns:
        return "no metric values"
    if len(ns) == 1:
        return f"mean ± std over n={ns[0]} {unit if ns[0] != 1 else unit.rstrip('s')}"
    return f"mean ± std over {unit}; n differs between cells and is shown in each"


def _arrow(higher: bool | None) -> str:
    return "" if higher is None else (" ↑" if higher else " ↓")


def summary_table(sweep: Sweep, metrics: Sequence[str], formats: dict[str, str] | None = None) -> Table:
    """Configurations (rows) x metrics (columns)."""
    rows = sweep.row_keys
    pieces = [cell_stats(sweep.runs, rows, m).assign(metric=m, column=m) for m in metrics]
    stats = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(
        columns=[*rows, "mean", "std", "n", "metric", "column"])
    directions = {m: sweep.direction(m) for m in metrics}
    fmts = {m: metric_format(m, sweep.runs[m].pipe(pd.to_numeric, errors="coerce"), formats) for m in metrics}
    stats = _finish(stats, directions, fmts)
    note = "; ".join(p for p in (_n_note(stats), sweep.settings_note(metrics)) if p)
    return Table(name="summary", title="Summary", row_keys=rows, col_keys=[], columns=list(metrics),
                 headers={m: m + _arrow(directions[m]) for m in metrics}, stats=stats, note=note)


def default_pivot_keys(sweep: Sweep, rows: Sequence[str] | None, cols: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Columns: ``cols``, else ``steps`` or the last varying key; rows: ``rows``, else the other varying keys."""
    if cols:
        col_keys = list(cols)
    elif rows:
        col_keys = [k for k in sweep.keys if k not in rows][-1:]
    elif len(sweep.keys) >= 2:
        col_keys = ["steps"] if "steps" in sweep.keys else sweep.keys[-1:]
    else:
        col_keys = []
    row_keys = list(rows) if rows else [k for k in sweep.keys if k not in col_keys]
    if col_keys and not row_keys:  # only the column key varies: label the single row by model
        row_keys = [c for c in ("model", "scheduler") if c in sweep.runs and c not in col_keys][:1] or ["seed"]
    if set(row_keys) & set(col_keys):
        raise EvalrunError(f"rows {row_keys} and cols {col_keys} share a key; a key can be rows or cols, not both")
    return row_keys, col_keys


def pivot(frame: pd.DataFrame, rows: list[str], cols: list[str], value: str, higher: bool | None, fmt: str,
          name: str, title: str, note: str = "", unit: str = "seeds", key_headers: bool = True) -> Table:
    """``value`` of ``frame`` with ``rows`` x ``cols`` as "mean ± std" cells (one frame row = one sample)."""
    stats = cell_stats(frame, rows + cols, value)
    labels = [", ".join(value_text(v) for v in t) for t in stats[cols].itertuples(index=False)]
    stats = stats.assign(metric=value, column=labels)
    order = frame[cols].drop_duplicates().sort_values(cols)
    columns = list(dict.fromkeys(", ".join(value_text(v) for v in t) for t in order.itertuples(index=False)))
    stats = _finish(stats, {c: higher for c in columns}, {c: fmt for c in columns})
    note = "; ".join(p for p in (_n_note(stats, unit), note) if p)
    head = ", ".join(cols)
    return Table(name=name, title=title, row_keys=rows, col_keys=cols, columns=columns,
                 headers={c: f"{head}={c}" if key_headers else c for c in columns},
                 stats=stats, note=note)


def _direction_text(higher: bool | None) -> str:
    return "" if higher is None else (" (higher is better)" if higher else " (lower is better)")


def pivot_table(sweep: Sweep, rows: list[str], cols: list[str], metric: str,
                formats: dict[str, str] | None = None) -> Table:
    """``metric`` with configurations ``rows`` x ``cols`` over the runs, e.g. scheduler x steps.

    Cells aggregate over seeds only: a varying key that ``rows`` and ``cols`` leave open (see
    :func:`unsplit_keys`) is added to the row keys and named in the note, never pooled into the
    cells (as in the plots)."""
    extra = unsplit_keys(sweep, [*rows, *cols])
    rows = [*rows, *extra]
    notes = [f"rows also split by {', '.join(extra)}, which {'varies' if len(extra) == 1 else 'vary'}"] if extra else []
    higher = sweep.direction(metric)
    fmt = metric_format(metric, pd.to_numeric(sweep.runs[metric], errors="coerce"), formats)
    note = "; ".join(p for p in (*notes, sweep.settings_note([metric])) if p)
    return pivot(sweep.runs, rows, cols, metric, higher, fmt, name=f"{metric}_by_{'_'.join(rows)}_x_{'_'.join(cols)}",
                 title=f"{metric}{_direction_text(higher)}", note=note)


def unsplit_keys(sweep: Sweep, keys: Sequence[str]) -> list[str]:
    """Varying keys (``sweep.keys``: seeds and their aliases left out) that still vary within a group of
    ``keys``; pooling over them would mix configurations in one cell. Aliases of ``keys`` (e.g.
    ``scheduler_class`` for ``scheduler``) and keys nested in them do not count."""
    runs, keys = sweep.runs, list(keys)
    extra: list[str] = []
    for key in sweep.keys:
        if key in keys or key in extra:
            continue
        by = [*keys, *extra]
        groups = runs[by].astype(str) if by else None
        values = runs[key].astype(str)
        if by and values.groupby([groups[c] for c in by], sort=False).nunique().max() <= 1:
            continue
        extra.append(key)
    if extra:
        log.info("pivot rows %s also split by %s, which vary across runs; cells average over seeds only",
                 keys, extra)
    return extra


def breakdown_tables(sweep: Sweep, metrics: Sequence[str], formats: dict[str, str] | None = None) -> list[Table]:
    """Per-image ``metrics`` by PartiPrompts Category and Challenge: each run's mean per category,
    then mean ± std of those over seeds, configurations as rows."""
    per_image = sweep.per_image()
    out = []
    for facet in ("category", "challenge"):
        if facet not in per_image or per_image[facet].notna().sum() == 0:
            continue
        for metric in metrics:
            data = per_image.assign(_v=pd.to_numeric(per_image[metric], errors="coerce"))
            per_run = data.groupby(["run_dir", facet], sort=False)["_v"].mean().rename(metric).reset_index()
            per_run = per_run.merge(sweep.runs[["run_dir", *sweep.row_keys]], on="run_dir")
            higher = sweep.direction(metric)
            fmt = metric_format(metric, per_run[metric], formats)
            sizes = data.dropna(subset=[facet]).groupby(facet)["prompt_id"].nunique()
            count = f"{sizes.min()}" if sizes.min() == sizes.max() else f"{sizes.min()}–{sizes.max()}"
            note = "; ".join(p for p in (f"{count} prompts per {facet}", sweep.settings_note([metric])) if p)
            out.append(pivot(per_run, sweep.row_keys, [facet], metric, higher, fmt, name=f"{metric}_by_{facet}",
                             title=f"{metric} by {facet}{_direction_text(higher)}", note=note, key_headers=False))
    return out


# ----------------------------------------------------------------------------- writers
def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


def to_markdown(table: Table) -> str:
    head = [*table.row_keys, *(table.headers[c] for c in table.columns)]
    lines = [f"### {table.title}", "", "| " + " | ".join(map(_md_escape, head)) + " |",
             "|" + "|".join([" --- "] * len(table.row_keys) + [" ---: "] * len(table.columns)) + "|"]
    for row in table.row_labels():
        cells = []
        for column in table.columns:
            hit = table.cell(row, column)
            text = DASH if hit is None else _md_escape(hit["cell"])
            cells.append(f"**{text}**" if hit is not None and hit["best"] else text)
        lines.append("| " + " | ".join([*(_md_escape(value_text(v)) for v in row), *cells]) + " |")
    if table.note:
        lines += ["", f"_{table.note}; best per column in bold._"]
    return "\n".join(lines)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return out.replace("±", r"$\pm$").replace("–", "--").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")


def to_latex(table: Table) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); best cells in bold."""
    nrow, ncol = len(table.row_keys), len(table.columns)
    comment = f"{table.title}" + (f": {table.note}" if table.note else "")
    comment = comment.replace("±", "+/-").replace("↑", "(higher is better)").replace("↓", "(lower is better)")
    lines = ["% " + " ".join(comment.split()), rf"\begin{{tabular}}{{{'l' * nrow}{'c' * ncol}}}", r"\toprule"]
    if table.col_keys:
        spanner = latex_escape(", ".join(table.col_keys))
        lines.append(" & " * nrow + rf"\multicolumn{{{ncol}}}{{c}}{{{spanner}}} \\")
        lines.append(rf"\cmidrule(lr){{{nrow + 1}-{nrow + ncol}}}")
        head = [*table.row_keys, *table.columns]
    else:
        head = [*table.row_keys, *(table.headers[c] for c in table.columns)]
    lines += [" & ".join(latex_escape(h) for h in head) + r" \\", r"\midrule"]
    for row in table.row_labels():
        cells = []
        for column in table.columns:
            hit = table.cell(row, column)
            text = "--" if hit is None else latex_escape(hit["cell"])
            cells.append(rf"\textbf{{{text}}}" if hit is not None and hit["best"] else text)
        lines.append(" & ".join([*(latex_escape(value_text(v)) for v in row), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv_frame(table: Table) -> pd.DataFrame:
    """Long form, full precision: the row and column keys, ``metric``, mean, std, n, best, cell."""
    return table.stats[[*table.row_keys, *table.col_keys, "metric", *STATS]]


def write_table(table: Table, directory: Path) -> list[Path]:
    from evalrun.results import atomic_write_text, write_csv

    stem = Path(directory) / table.name
    md, tex, csv = stem.with_suffix(".md"), stem.with_suffix(".tex"), stem.with_suffix(".csv")
    atomic_write_text(md, to_markdown(table) + "\n")
    atomic_write_text(tex, to_latex(table))
    write_csv(to_csv_frame(table), csv)
    return [md, tex, csv]
