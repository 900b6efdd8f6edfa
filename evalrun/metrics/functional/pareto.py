"""Pareto fronts over result tables: which configurations are not beaten on every axis at once
(e.g. cost = seconds per image or steps, quality = FID or CLIP score).

Point a dominates point b when a is at least as good as b on every axis and strictly better
on at least one, "better" following each axis' direction (lower cost is better; quality is
better higher, like CLIP score, or lower, like FID). The front is the set of points no other
point dominates. Ties: two points equal on every axis do not dominate each other, so both
stay on the front unless a third point beats them; a point that ties another on one axis
and is worse on the other is dominated. Rows with a NaN are never on the front and dominate
nothing (a missing result is not a result). Exact comparisons: round values first if
numerically equal results should tie.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK_VALUES = 1 << 24


def non_dominated(points, higher_is_better: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (n, k) given each axis' direction."""
    p = np.asarray(points, np.float64)
    if p.ndim != 2:
        raise ValueError(f"points must be (n, k), got shape {p.shape}")
    if len(higher_is_better) != p.shape[1]:
        raise ValueError(f"higher_is_better has {len(higher_is_better)} entries for {p.shape[1]} axes")
    p = np.where(np.asarray(higher_is_better, bool), p, -p)     # now larger is better on every axis
    valid = ~np.isnan(p).any(1)
    candidates = p[valid]
    mask = np.zeros(len(p), bool)
    if not len(candidates):
        return mask
    dominated = np.zeros(len(candidates), bool)
    rows = max(1, BLOCK_VALUES // max(1, len(candidates) * p.shape[1]))
    for lo in range(0, len(candidates), rows):
        b = candidates[lo:lo + rows, None, :]                   # the points tested
        others = candidates[None, :, :]                         # every point that might beat them
        beats = (others >= b).all(-1) & (others > b).any(-1)
        dominated[lo:lo + rows] = beats.any(1)
    mask[np.flatnonzero(valid)] = ~dominated
    return mask


def pareto_front(cost, quality, quality_higher_is_better: bool = True, cost_higher_is_better: bool = False) -> np.ndarray:
    """Mask of (cost, quality) points on the Pareto front; by default lower cost and higher
    quality are better (``quality_higher_is_better=False`` for FID-like metrics)."""
    cost, quality = np.asarray(cost, np.float64).reshape(-1), np.asarray(quality, np.float64).reshape(-1)
    if cost.shape != quality.shape:
        raise ValueError(f"cost and quality differ in length: {cost.shape[0]} vs {quality.shape[0]}")
    return non_dominated(np.stack([cost, quality], 1), [cost_higher_is_better, quality_higher_is_better])


def pareto_order(cost, quality, quality_higher_is_better: bool = True, cost_higher_is_better: bool = False) -> np.ndarray:
    """Indices of the front's points from best cost to worst (ties by quality, best first): the
    order in which to draw the front as a line."""
    mask = pareto_front(cost, quality, quality_higher_is_better, cost_higher_is_better)
    idx = np.flatnonzero(mask)
    c = np.asarray(cost, np.float64).reshape(-1)[idx] * (-1 if cost_higher_is_better else 1)
    q = np.asarray(quality, np.float64).reshape(-1)[idx] * (1 if quality_higher_is_better else -1)
    return idx[np.lexsort((-q, c))]
