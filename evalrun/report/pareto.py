"""Quality versus cost: each configuration's mean score against its mean cost (denoiser
evaluations, seconds per image, peak memory), and which configurations are on the Pareto front.

Costs are the columns runs declare with kind "cost"; each has a direction (lower is better for
all of evalrun's). The front uses :mod:`evalrun.metrics.functional.pareto` on the means over
seeds: a configuration is on it when no other is at least as good on both axes and better on
one. Means only: a point just off the front may be within the noise of it (the error bars say).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from evalrun.metrics.functional.pareto import pareto_front, pareto_order
from evalrun.report.sweep import value_text

if TYPE_CHECKING:
    from evalrun.report.labels import Labels
    from evalrun.report.sweep import Sweep

COLUMNS = ["quality", "cost", "quality_mean", "quality_std", "cost_mean", "cost_std", "n", "pareto", "front_rank"]


def mark_front(points: pd.DataFrame, quality_higher: bool, cost_higher: bool = False,
               quality: str = "quality_mean", cost: str = "cost_mean") -> pd.DataFrame:
    """``points`` with ``pareto`` (on the front) and ``front_rank`` (0, 1, ... from the cheapest front
    point; NaN off the front) added. Rows with a NaN are never on the front."""
    out = points.copy()
    c, q = out[cost].to_numpy(float), out[quality].to_numpy(float)
    out["pareto"] = pareto_front(c, q, quality_higher, cost_higher) if len(out) else np.zeros(0, bool)
    rank = np.full(len(out), np.nan)
    if len(out):
        rank[pareto_order(c, q, quality_higher, cost_higher)] = np.arange(int(out["pareto"].sum()))
    out["front_rank"] = rank
    return out


def cost_quality(sweep: Sweep, quality: str, cost: str) -> pd.DataFrame:
    """One row per configuration (``sweep.row_keys`` values): mean/std over seeds of ``quality`` and
    ``cost``, n, and the Pareto marks. Empty when fewer than two configurations have both values."""
    rows = []
    for label, runs in sweep.configurations():
        q, c = (pd.to_numeric(runs[m], errors="coerce") for m in (quality, cost))
        rows.append({**dict(zip(sweep.row_keys, label)), "quality": quality, "cost": cost,
                     "quality_mean": q.mean(), "quality_std": q.std(), "cost_mean": c.mean(), "cost_std": c.std(),
                     "n": int((q.notna() & c.notna()).sum())})
    frame = pd.DataFrame(rows)
    if frame.empty or (frame["quality_mean"].notna() & frame["cost_mean"].notna()).sum() < 2:
        return pd.DataFrame(columns=[*sweep.row_keys, *COLUMNS])
    return mark_front(frame, bool(sweep.direction(quality)), sweep.declared(cost).get("direction") == "higher")


def cost_quality_frames(sweep: Sweep, qualities: Sequence[str], costs: Sequence[str]) -> list[pd.DataFrame]:
    """:func:`cost_quality` for every score with a direction against every cost; empty ones left out, and
    costs asked for as metrics (``--metric clip_score nfe``) are no quality axis."""
    frames = []
    for cost in costs:
        for quality in qualities:
            if sweep.direction(quality) is None or quality in costs:
                continue
            frame = cost_quality(sweep, quality, cost)
            if not frame.empty:
                frames.append(frame)
    return frames


def config_text(row: pd.Series, keys: Sequence[str], labels: Labels | None = None) -> str:
    return ", ".join(f"{labels(k) if labels else k}={labels.value(k, row[k]) if labels else value_text(row[k])}"
                     for k in keys)


def to_markdown(frames: Sequence[pd.DataFrame], keys: Sequence[str], labels: Labels | None = None) -> str:
    """Per (quality, cost): the front, cheapest first, and how many configurations it dominates."""
    lines = []
    for frame in frames:
        quality, cost = frame["quality"].iloc[0], frame["cost"].iloc[0]
        qn, cn = (labels(quality), labels(cost)) if labels else (quality, cost)
        front = frame[frame["pareto"]].sort_values("front_rank")
        lines += [f"### {qn} vs {cn}", "",
                  f"Pareto front ({len(front)} of {len(frame)} configurations; means over seeds):", ""]
        for _, r in front.iterrows():
            lines.append(f"- {config_text(r, keys, labels)}: {cn} {r['cost_mean']:.4g}, {qn} {r['quality_mean']:.4g}")
        lines.append("")
    return "\n".join(lines)


def write_pareto(frames: Sequence[pd.DataFrame], directory: Path) -> list[Path]:
    from evalrun.results import write_csv

    path = Path(directory) / "pareto.csv"
    write_csv(pd.concat(frames, ignore_index=True), path)
    return [path]
