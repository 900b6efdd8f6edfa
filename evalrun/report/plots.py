"""Metric vs a numeric key (steps by default), one line per configuration, error bars over seeds;
and quality vs cost (NFE, seconds per image, memory) with the Pareto front marked.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch),
so this works headless and inside notebooks alike. Each plot is written as PNG and SVG; the
SVG carries no date and fixed ids, so re-running the report gives identical files.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evalrun.errors import EvalrunError
from evalrun.report.labels import Labels
from evalrun.report.sweep import value_text

if TYPE_CHECKING:
    from evalrun.report.sweep import Sweep

log = logging.getLogger(__name__)


# Longest legend entry or point label: a long config value (a JSON prompts filter, a path) would push the
# legend off the figure; the tables keep the full values.
MAX_LABEL = 40


def short(text: str, limit: int = MAX_LABEL) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _numeric(series: pd.Series) -> bool:
    values = pd.to_numeric(series, errors="coerce")
    return bool(values.notna().all())


def default_x(sweep: Sweep) -> str | None:
    """``steps`` if it varies, else the first varying numeric key; None if none is numeric."""
    if "steps" in sweep.keys:
        return "steps"
    return next((k for k in sweep.keys if _numeric(sweep.runs[k])), None)


def line_stats(runs: pd.DataFrame, metric: str, x: str, lines: list[str]) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and n of ``metric`` per line and x value."""
    data = runs[[*lines, x]].assign(_x=pd.to_numeric(runs[x]), _v=pd.to_numeric(runs[metric], errors="coerce"))
    stats = data.groupby([*lines, "_x"], dropna=False, sort=True)["_v"].agg(mean="mean", std="std", n="count")
    return stats.reset_index().rename(columns={"_x": x})


def _save(fig: Figure, stem: Path, caption: str) -> list[Path]:
    """Caption under the axes, then PNG and SVG (no date, fixed ids: re-runs give identical SVGs)."""
    fig.supxlabel("\n".join(textwrap.wrap(caption, width=95)), x=0.02, ha="left", fontsize=7, color="0.35")
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    with matplotlib.rc_context({"svg.hashsalt": "evalrun", "svg.fonttype": "none"}):
        fig.savefig(png, dpi=150, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None, "Creator": None})
    return [png, svg]


def _banner(fig: Figure, banner: str) -> None:
    if banner:
        fig.suptitle("\n".join(textwrap.wrap(banner, width=70)), color="#b00", fontsize=8, fontweight="bold")


def plot_metric(runs: pd.DataFrame, metric: str, x: str, lines: list[str], higher: bool | None,
                stem: Path, note: str = "", labels: Labels | None = None, banner: str = "") -> list[Path]:
    """One figure: ``metric`` against ``x``, a line per combination of ``lines`` keys; PNG + SVG."""
    labels = labels or Labels()
    stats = line_stats(runs, metric, x, lines)
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    groups = list(stats.groupby(lines, dropna=False, sort=True)) if lines else [((), stats)]
    xs = sorted(stats[x].unique())
    # Shift lines a little sideways so error bars at the same x do not hide each other.
    spread = 0.02 * (xs[-1] - xs[0] if len(xs) > 1 else 1.0)
    for i, (label, g) in enumerate(groups):
        label = label if isinstance(label, tuple) else (label,)
        shift = spread * (i - (len(groups) - 1) / 2)
        ax.errorbar(g[x] + shift, g["mean"], yerr=g["std"], marker="o", capsize=3, linewidth=1.5,
                    label=", ".join(short(labels.value(k, v)) for k, v in zip(lines, label)) or None)
    if len(xs) <= 12:
        ax.set_xticks(xs, [labels.value(x, v) for v in xs])
    direction = "" if higher is None else (" (higher is better)" if higher else " (lower is better)")
    ax.set_title(f"{labels(metric)}{direction}", fontsize=11)
    ax.set_xlabel(labels(x))
    ax.set_ylabel(labels(metric))
    ax.grid(True, alpha=0.3)
    if lines:
        ax.legend(title=", ".join(labels(k) for k in lines), fontsize=8, title_fontsize=8)
    _banner(fig, banner)
    ns = sorted({int(n) for n in stats["n"]})
    caption = f"mean ± std over seeds (n={ns[0]})" if len(ns) == 1 else f"mean ± std over seeds (n={ns[0]}–{ns[-1]})"
    return _save(fig, stem, caption + (f"; {note}" if note else ""))


def plot_pareto(points: pd.DataFrame, keys: Sequence[str], stem: Path, labels: Labels | None = None,
                note: str = "", banner: str = "", higher: bool | None = None) -> list[Path]:
    """Quality against cost, one point per configuration (error bars: std over seeds), the Pareto
    front drawn as a line through its points; dominated points hollow and grey."""
    labels = labels or Labels()
    quality, cost = points["quality"].iloc[0], points["cost"].iloc[0]
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    front = points[points["pareto"]].sort_values("front_rank")
    rest = points[~points["pareto"].astype(bool)]
    if len(rest):  # an empty series would still put "dominated" in the legend
        ax.errorbar(rest["cost_mean"], rest["quality_mean"], xerr=rest["cost_std"].fillna(0),
                    yerr=rest["quality_std"].fillna(0), fmt="o", mfc="white", color="0.55", capsize=2,
                    label="dominated")
    ax.errorbar(front["cost_mean"], front["quality_mean"], xerr=front["cost_std"].fillna(0),
                yerr=front["quality_std"].fillna(0), fmt="o-", color="C3", capsize=2, linewidth=1.5,
                label="Pareto front")
    if len(points) <= 16:
        for _, r in points.iterrows():
            text = ", ".join(f"{labels(k)}={short(labels.value(k, r[k]))}" for k in keys)  # as config_text, cut
            ax.annotate(text, (r["cost_mean"], r["quality_mean"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points", color="0.2" if r["pareto"] else "0.5")
    ax.set_xlabel(labels(cost))
    ax.set_ylabel(labels(quality))
    direction = "" if higher is None else (" (higher is better)" if higher else " (lower is better)")
    ax.set_title(f"{labels.name(quality)} vs {labels.name(cost)}{direction}", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _banner(fig, banner)
    ns = sorted({int(n) for n in points["n"]})
    caption = (f"one point per configuration: mean ± std over seeds (n={ns[0]}{'' if len(ns) == 1 else f'–{ns[-1]}'}); "
               "front from the means")
    return _save(fig, stem, caption + (f"; {note}" if note else ""))


def plot_axis(sweep: Sweep, x: str | None) -> str | None:
    """The line plots' x axis: ``x``, else the default (None: no numeric key varies); a one-line error for a
    key that is not numeric, checked before the report writes anything."""
    x = x or default_x(sweep)
    if x is not None and not _numeric(sweep.runs[x]):
        raise EvalrunError(f"plot x axis {x!r} is not numeric (values: "
                           f"{', '.join(sorted({value_text(v) for v in sweep.runs[x]}))}); pick e.g. steps")
    return x


def plot_sweep(sweep: Sweep, directory: Path, metrics: Sequence[str], x: str | None = None,
               hue: Sequence[str] | None = None, labels: Labels | None = None) -> list[Path]:
    """A plot per metric against ``x`` (lines by ``hue`` plus every other varying key, never pooled),
    and quality-versus-cost plots with the Pareto front for every declared cost."""
    from evalrun.report.pareto import cost_quality_frames

    labels = labels or Labels(declared=dict(sweep.columns))
    banner = sweep.smoke_note()
    written = []
    x = plot_axis(sweep, x)
    if x is None:
        log.info("no numeric config key varies across runs: no line plots")
    else:
        lines = [k for k in (hue or []) if k != x]
        lines += [k for k in sweep.keys if k != x and k not in lines]
        for metric in metrics:
            if pd.to_numeric(sweep.runs[metric], errors="coerce").notna().any():
                written += plot_metric(sweep.runs, metric, x, lines, sweep.direction(metric),
                                       Path(directory) / f"{metric}_vs_{x}", note=sweep.settings_note([metric]),
                                       labels=labels, banner=banner)
    for points in cost_quality_frames(sweep, metrics, sweep.costs):
        quality, cost = points["quality"].iloc[0], points["cost"].iloc[0]
        written += plot_pareto(points, sweep.row_keys, Path(directory) / f"{quality}_vs_{cost}", labels=labels,
                               note=sweep.settings_note([quality]), banner=banner, higher=sweep.direction(quality))
    return written
