"""Runs that made the same images with other metrics, as one run.

A sweep re-run into a new sweep dir with a metric added samples nothing (its images come from the
store), so its runs are the first sweep's runs scored once more. Read together, the two would be
two runs of each configuration and seed: every shared value counted twice, paired twice, and the
new metric's settings columns (``pick_score.model``, empty in the first sweep) would split each
configuration in two. Here such runs become one row: equal in every config column but the metric
settings, and equal in those wherever both runs have them. The first run keeps its directory (its
images); the values and settings it lacks come from the others, as do their per-image columns
(:func:`per_image_columns`). A metric setting with one value wherever it was computed is then
given to every run, so it neither splits configurations nor shows as a key that varies.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import pandas as pd

log = logging.getLogger(__name__)


def settings_columns(columns: dict[str, dict[str, Any]], config_columns: Sequence[str]) -> list[str]:
    """The config columns that describe how a metric was computed (its declared ``depends_on``), not the images.
    Costs depend on generation settings (steps, dtype), which are never merged over."""
    found = {c for decl in columns.values() if decl.get("kind") != "cost" for c in decl.get("depends_on", [])}
    return [c for c in config_columns if c in found]


def _text(value: Any) -> str | None:
    """None for a missing value, else the value as text (how configurations are compared)."""
    return None if pd.isna(value) else str(value)


def merge_added_metrics(runs: pd.DataFrame, config_columns: Sequence[str], metric_columns: Sequence[str],
                        columns: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """(runs with such runs merged, {kept run_dir: [run dirs merged into it]})."""
    settings = settings_columns(columns, config_columns)
    images = [c for c in config_columns if c not in settings]
    if not settings or runs.empty:
        return runs, {}
    kept: list[int] = []
    merged: dict[str, list[str]] = {}
    rows = runs.copy()
    by_images = rows.groupby([rows[c].map(str) for c in images], sort=False, dropna=False).groups.values()
    for index in by_images:
        group: list[int] = []
        for i in index:
            target = next((k for k in group if _compatible(rows.loc[k], rows.loc[i], settings)), None)
            if target is None:
                group.append(i)
                continue
            _fill(rows, target, i, [*settings, *metric_columns])
            merged.setdefault(rows.at[target, "run_dir"], []).append(rows.at[i, "run_dir"])
        kept += group
    _fill_constant_settings(rows, settings)
    if merged:
        log.warning("%d run(s) made the same images as another run, with other metrics (a sweep re-run with a "
                    "metric added), and are read as one run with it: %s", sum(len(v) for v in merged.values()),
                    "; ".join(f"{', '.join(v)} into {k}" for k, v in merged.items()))
    return rows.loc[sorted(kept)].reset_index(drop=True), merged


def _fill_constant_settings(rows: pd.DataFrame, settings: list[str]) -> None:
    """A metric's setting that has one value wherever the metric was computed is that metric's
    setting for every run: empty where a run did not compute it, it would split configurations (and
    show as a key that varies) over nothing but which runs had the metric."""
    for c in settings:
        present = rows[c].dropna()
        if len(present) and present.map(str).nunique() == 1 and rows[c].isna().any():
            _assign(rows, rows[c].isna(), c, present.iloc[0])


def _compatible(a: pd.Series, b: pd.Series, settings: list[str]) -> bool:
    for c in settings:
        va, vb = _text(a.get(c)), _text(b.get(c))
        if va is not None and vb is not None and va != vb:
            return False
    return True


def _fill(rows: pd.DataFrame, target: int, source: int, fields: list[str]) -> None:
    """The target run's missing values of ``fields``, taken from ``source``."""
    for c in fields:
        if c in rows and pd.isna(rows.at[target, c]) and not pd.isna(rows.at[source, c]):
            _assign(rows, target, c, rows.at[source, c])


def _assign(rows: pd.DataFrame, where: Any, column: str, value: Any) -> None:
    """``rows.loc[where, column] = value``; a column read as numbers (all empty) takes text as objects."""
    if rows[column].dtype != object and isinstance(value, str):
        rows[column] = rows[column].astype(object)
    rows.loc[where, column] = value


def per_image_columns(frame: pd.DataFrame, others: list[pd.DataFrame]) -> pd.DataFrame:
    """A kept run's per-image rows with the per-image columns only the merged runs have (by image id)."""
    for other in others:
        if "image_id" not in frame or "image_id" not in other:
            continue
        extra = [c for c in other.columns if c not in frame.columns]
        if extra:
            frame = frame.merge(other[["image_id", *extra]].drop_duplicates("image_id"), on="image_id", how="left")
    return frame
