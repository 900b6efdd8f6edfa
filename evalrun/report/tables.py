"""Tables of run metrics: "mean ± std" over seeds with n, the best cell bold only where it is
significantly better than the runner-up, as Markdown, LaTeX (``latex.py``) and CSV.

A :class:`Table` holds the numbers in long form (one row per cell); the writers only format.
Directions come from each column's declaration in ``run.json``; spreads, counts, costs and
undeclared columns are never marked. The marking rule is :mod:`evalrun.report.significance`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import pandas as pd

from evalrun.errors import EvalrunError
from evalrun.report.formats import format_cell, metric_format
from evalrun.report.labels import Labels
from evalrun.report.significance import RULE, best_vs_runner_up
from evalrun.report.sweep import PROMPT_UNIT, value_text

if TYPE_CHECKING:
    from evalrun.report.sweep import Sweep

log = logging.getLogger(__name__)

STATS = ["mean", "std", "n", "top", "best", "test", "cell"]
UNIT_IMAGE = ["seed", PROMPT_UNIT, "image_index"]


@dataclass
class Table:
    """``stats``: one row per cell: ``row_keys`` and ``col_keys`` values, ``metric``, ``column`` (the
    column id), ``mean``, ``std`` (ddof=1), ``n``, ``top`` (best mean of its column), ``best`` (bold:
    top and significantly better than the runner-up), ``test`` (on the top cell: the test against
    the runner-up), ``cell`` (formatted text)."""

    name: str
    title: str
    row_keys: list[str]
    col_keys: list[str]          # empty: one column per metric
    columns: list[str]           # column ids, in order
    headers: dict[str, str]      # column id -> header text (with the key: "Steps = 20")
    stats: pd.DataFrame
    note: str = ""
    labels: Labels = field(default_factory=Labels)
    fmts: dict[str, str] = field(default_factory=dict)       # column id -> format spec
    col_text: dict[str, str] = field(default_factory=dict)   # column id -> value text under a spanner ("20")
    rule: str = ""               # the bold rule, when some column can be marked
    banner: str = ""             # a warning every rendering shows first (random-weights smoke model)
    _index: dict | None = field(default=None, repr=False, compare=False)

    def cell(self, row: tuple, column: str) -> pd.Series | None:
        """The stats row of a cell (row key values, column id); None when the cell is empty."""
        if self._index is None:
            keys = zip(*(self.stats[k].map(str) for k in self.row_keys))
            self._index = {}
            for i, (key, col) in enumerate(zip(keys, self.stats["column"])):
                self._index.setdefault((key, col), i)
        i = self._index.get((tuple(str(v) for v in row), column))
        return None if i is None else self.stats.iloc[i]

    def row_labels(self) -> list[tuple]:
        return list(dict.fromkeys(tuple(r) for r in self.stats[self.row_keys].itertuples(index=False)))

    def key_header(self, key: str) -> str:
        return self.labels(key)

    def spanner(self) -> str:
        return ", ".join(self.labels(k) for k in self.col_keys)

    def uniform_n(self) -> bool:
        return len(_cell_ns(self.stats)) <= 1



def cell_stats(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean, sample std (ddof=1; NaN for n=1) and n of ``value`` per group of ``keys``."""
    data = frame[keys].assign(_v=pd.to_numeric(frame[value], errors="coerce"))
    grouped = data.groupby(keys, dropna=False, sort=True)["_v"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


def _key(values) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def cell_samples(sweep: Sweep, keys: list[str], metric: str, facet: str | None = None) -> dict[tuple, pd.Series]:
    """Each cell's values of ``metric`` indexed by the pairing unit: the seed for run-level metrics,
    (seed, prompt, image_index) for per-image ones. Cells are groups of ``keys`` (as text)."""
    config = [k for k in keys if k != facet]
    if metric in sweep.per_image_metrics():
        frame = sweep.per_image()
        cols = ["run_dir", PROMPT_UNIT, "image_index", metric, *([facet] if facet else [])]
        data = frame[cols].merge(sweep.runs[list(dict.fromkeys(["run_dir", "seed", *config]))], on="run_dir")
        units = UNIT_IMAGE
    else:
        data, units = sweep.runs[list(dict.fromkeys([*config, "seed", metric]))], ["seed"]
    data = data.assign(_v=pd.to_numeric(data[metric], errors="coerce"))
    out = {}
    for label, group in data.groupby(keys, dropna=False, sort=False):
        label = label if isinstance(label, tuple) else (label,)
        out[_key(label)] = group.groupby([group[u].map(str) for u in units])["_v"].mean()
    return out


def _finish(stats: pd.DataFrame, directions: dict[str, bool | None], fmts: dict[str, str], cell_keys: list[str],
            samples: Callable[[str], dict[tuple, pd.Series]] | None, seed: int, resamples: int) -> pd.DataFrame:
    """Mark each column's top cell(s), bold the top one where significant (see ``significance``), format cells."""
    stats = stats.copy()
    stats["top"], stats["best"], stats["test"] = False, False, ""
    for column, idx in stats.groupby("column", sort=False).groups.items():
        higher = directions.get(column)
        cells = stats.loc[idx, ["mean", "std", "n", *cell_keys]]
        if higher is None or cells["mean"].notna().sum() < 2:
            continue
        target = cells["mean"].max() if higher else cells["mean"].min()
        stats.loc[idx, "top"] = cells["mean"] == target
        by_cell = None
        if samples is not None:
            found = samples(column)
            # Each value from its own column: a row across int and float keys is all float (steps 2 -> "2.0").
            by_cell = {i: found[k] for i in idx if (k := _key(stats.at[i, c] for c in cell_keys)) in found}
        best, verdict = best_vs_runner_up(cells, higher, by_cell, seed=seed, resamples=resamples)
        if best is not None:
            stats.loc[best, "best"] = verdict.significant
            stats.loc[best, "test"] = verdict.text()
    uniform_n = len(_cell_ns(stats)) <= 1
    stats["cell"] = [format_cell(r.mean, r.std, r.n, fmts[r.column], show_n=not uniform_n)
                     for r in stats.itertuples(index=False)]
    return stats


def _cell_ns(stats: pd.DataFrame) -> list[int]:
    """The value counts of the cells that show a value (an empty cell, n=0, does not make n differ)."""
    return sorted({int(n) for n in stats["n"] if n > 0})


def _n_note(stats: pd.DataFrame, unit: str = "seeds") -> str:
    ns = _cell_ns(stats)
    if not ns:
        return "no metric values"
    if len(ns) == 1:
        return f"mean ± std over n={ns[0]} {unit if ns[0] != 1 else unit.rstrip('s')}"
    return f"mean ± std over {unit}; n differs between cells and is shown in each"


def _arrow(direction: str | None) -> str:
    return {"higher": " ↑", "lower": " ↓"}.get(direction or "", "")


def _direction_text(higher: bool | None) -> str:
    return "" if higher is None else (" (higher is better)" if higher else " (lower is better)")


def _labels(sweep: Sweep, labels: Labels | None) -> Labels:
    return labels if labels is not None else Labels(declared=dict(sweep.columns))


def summary_table(sweep: Sweep, metrics: Sequence[str], formats: dict[str, str] | None = None, *,
                  costs: Sequence[str] = (), labels: Labels | None = None, seed: int = 0,
                  resamples: int = 10_000) -> Table:
    """Configurations (rows, labelled by the keys and what moves with them) x metrics, then costs
    (columns); costs are shown, never marked."""
    rows, labels = sweep.label_keys, _labels(sweep, labels)
    columns = list(dict.fromkeys([*metrics, *costs]))
    pieces = [cell_stats(sweep.runs, rows, m).assign(metric=m, column=m) for m in columns]
    stats = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(
        columns=[*rows, "mean", "std", "n", "metric", "column"])
    directions = {m: (sweep.direction(m) if m not in costs else None) for m in columns}
    fmts = {m: metric_format(m, pd.to_numeric(sweep.runs[m], errors="coerce"), formats, sweep.columns)
            for m in columns}
    stats = _finish(stats, directions, fmts, rows, lambda m: cell_samples(sweep, rows, m), seed, resamples)
    cost_note = f"costs ({', '.join(labels.name(c) for c in costs)}) are not marked" if costs else ""
    note = "; ".join(p for p in (_n_note(stats), sweep.settings_note(columns), cost_note) if p)
    marked = any(v is not None for v in directions.values())
    return Table(name="summary", title="Summary", row_keys=rows, col_keys=[], columns=columns,
                 headers={m: labels(m) + _arrow(sweep.declared(m).get("direction")) for m in columns}, stats=stats,
                 note=note, labels=labels, fmts=fmts, rule=RULE if marked else "", banner=sweep.smoke_note())


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
          name: str, title: str, note: str = "", unit: str = "seeds", *, labels: Labels | None = None,
          samples: dict[tuple, pd.Series] | None = None, seed: int = 0, resamples: int = 10_000,
          banner: str = "") -> Table:
    """``value`` of ``frame`` with ``rows`` x ``cols`` as "mean ± std" cells (one frame row = one sample).
    ``samples``: per cell (``rows + cols`` values as text), values by pairing unit, for the bold test."""
    labels = labels or Labels()
    stats = cell_stats(frame, rows + cols, value)
    ids = [", ".join(value_text(v) for v in t) for t in stats[cols].itertuples(index=False)]
    stats = stats.assign(metric=value, column=ids)
    order = frame[cols].drop_duplicates().sort_values(cols)
    columns, col_text = [], {}
    for t in order.itertuples(index=False):
        cid = ", ".join(value_text(v) for v in t)
        if cid not in col_text:
            columns.append(cid)
            col_text[cid] = ", ".join(labels.value(k, v) for k, v in zip(cols, t))
    stats = _finish(stats, {c: higher for c in columns}, {c: fmt for c in columns}, rows + cols,
                    None if samples is None else (lambda c: samples), seed, resamples)
    note = "; ".join(p for p in (_n_note(stats, unit), note) if p)
    spanner = ", ".join(labels(k) for k in cols)
    return Table(name=name, title=title, row_keys=rows, col_keys=cols, columns=columns,
                 headers={c: f"{spanner} = {col_text[c]}" for c in columns}, stats=stats, note=note,
                 labels=labels, fmts={c: fmt for c in columns}, col_text=col_text,
                 rule=RULE if higher is not None else "", banner=banner)


def pivot_table(sweep: Sweep, rows: list[str], cols: list[str], metric: str,
                formats: dict[str, str] | None = None, *, labels: Labels | None = None, seed: int = 0,
                resamples: int = 10_000) -> Table:
    """``metric`` with configurations ``rows`` x ``cols`` over the runs, e.g. scheduler x steps.

    Cells aggregate over seeds only: a varying key that ``rows`` and ``cols`` leave open (see
    :func:`unsplit_keys`) is added to the row keys and named in the note, never pooled into the
    cells (as in the plots)."""
    labels = _labels(sweep, labels)
    extra = unsplit_keys(sweep, [*rows, *cols])
    rows = [*rows, *extra]
    notes = [f"rows also split by {', '.join(labels(k) for k in extra)}, which "
             f"{'varies' if len(extra) == 1 else 'vary'}"] if extra else []
    higher = sweep.direction(metric)
    fmt = metric_format(metric, pd.to_numeric(sweep.runs[metric], errors="coerce"), formats, sweep.columns)
    note = "; ".join(p for p in (*notes, sweep.settings_note([metric])) if p)
    return pivot(sweep.runs, rows, cols, metric, higher, fmt, name=f"{metric}_by_{'_'.join(rows)}_x_{'_'.join(cols)}",
                 title=f"{labels(metric)}{_direction_text(higher)}", note=note, labels=labels,
                 samples=cell_samples(sweep, rows + cols, metric), seed=seed, resamples=resamples,
                 banner=sweep.smoke_note())


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
        groups = runs[by].map(str) if by else None
        values = runs[key].map(str)
        if by and values.groupby([groups[c] for c in by], sort=False).nunique().max() <= 1:
            continue
        extra.append(key)
    if extra:
        log.info("pivot rows %s also split by %s, which vary across runs; cells average over seeds only",
                 keys, extra)
    return extra


def breakdown_tables(sweep: Sweep, metrics: Sequence[str], formats: dict[str, str] | None = None, *,
                     labels: Labels | None = None, seed: int = 0, resamples: int = 10_000) -> list[Table]:
    """Per-image ``metrics`` by PartiPrompts Category and Challenge: each run's mean per category,
    then mean ± std of those over seeds, configurations as rows."""
    labels = _labels(sweep, labels)
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
            fmt = metric_format(metric, per_run[metric], formats, sweep.columns)
            sizes = data.dropna(subset=[facet]).groupby(facet)["prompt_id"].nunique()
            count = f"{sizes.min()}" if sizes.min() == sizes.max() else f"{sizes.min()}–{sizes.max()}"
            note = "; ".join(p for p in (f"{count} prompts per {labels.name(facet).lower()}",
                                         sweep.settings_note([metric])) if p)
            samples = cell_samples(sweep, [*sweep.row_keys, facet], metric, facet=facet)
            out.append(pivot(per_run, sweep.row_keys, [facet], metric, higher, fmt, name=f"{metric}_by_{facet}",
                             title=f"{labels(metric)} by {labels.name(facet).lower()}{_direction_text(higher)}",
                             note=note, labels=labels, samples=samples, seed=seed, resamples=resamples,
                             banner=sweep.smoke_note()))
    return out
