"""When is the best cell of a table column really the best? The rule tables bold by.

The best mean of a column is marked only when it is significantly better than the runner-up
(the second-best mean), at 95%:

- paired, when the two configurations share units (seeds for run-level metrics; (seed, prompt,
  image) for per-image metrics): an interval of the mean paired difference must exclude zero.
  With at least ``MIN_BOOTSTRAP_PAIRS`` pairs it is :func:`bootstrap_ci` (the percentile bootstrap
  the comparisons use too); with fewer, a Student-t interval of the mean
  difference, because a percentile bootstrap of 2 or 3 pairs excludes zero whenever they agree
  in sign (half the time, and a quarter of the time, when there is no difference at all);
- otherwise, by interval: the Student-t 95% intervals of the two means (over seeds, as the cells
  show them) must not overlap. A cell with one seed has no interval and is never marked.

Ties for the best mean are never marked. :data:`RULE` says this in one sentence for captions.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from evalrun.errors import EvalrunError

MIN_BOOTSTRAP_PAIRS = 10
# Fewest bootstrap resamples accepted: a 95% percentile interval is read from the 2.5% tails, which
# hold 25 resamples each at 1000 (one resample gives a zero-width interval, "significant" whatever the data).
MIN_RESAMPLES = 1000
LEVEL = 0.95
RULE = ("bold: best in its column and significantly better than the runner-up (95%; paired over shared "
        "seeds, or per image for per-image metrics: percentile bootstrap with at least "
        f"{MIN_BOOTSTRAP_PAIRS} pairs, Student-t with fewer; otherwise non-overlapping Student-t intervals "
        "over seeds); no bold: the best is within the noise")


@dataclass(frozen=True)
class Verdict:
    """The best cell against the runner-up. ``low``/``high``: the interval of the difference
    (best − runner-up, signed so that positive is better) for paired tests; for intervals, the
    gap between them (positive when they do not overlap) in both."""

    significant: bool
    method: str          # "paired bootstrap", "paired t", "t intervals", "tie" or "untestable"
    n: int               # pairs, or the smaller seed count for intervals
    low: float = math.nan
    high: float = math.nan

    def text(self) -> str:
        if self.method == "untestable":
            return "not testable (fewer than 2 seeds)"
        if self.method == "tie":
            return "tied with the runner-up"
        if self.method == "t intervals":
            return f"t intervals over seeds (n≥{self.n}): {'disjoint' if self.significant else 'overlap'}"
        return (f"{self.method}, {self.n} pairs: 95% CI of the difference [{self.low:.4g}, {self.high:.4g}]"
                f"{'' if self.significant else ' includes 0'}")


def t_halfwidth(std: float, n: int, level: float = LEVEL) -> float:
    """Half-width of the Student-t interval of a mean of ``n`` values with sample std ``std``."""
    from scipy import stats

    if n < 2 or not np.isfinite(std):
        return math.nan
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def check_bootstrap(resamples: object, seed: object = 0, prefix: str = "") -> None:
    """Raise a one-line :class:`EvalrunError` unless ``resamples`` is an integer >= :data:`MIN_RESAMPLES`
    and ``seed`` one >= 0 (numpy's generators take no negative seed). ``prefix``: ``"--"`` names CLI flags."""
    def whole(value: object) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    if not whole(resamples) or resamples < MIN_RESAMPLES:  # type: ignore[operator]
        flag = f"{prefix}resamples {resamples!r}" if prefix else f"resamples={resamples!r}"
        raise EvalrunError(f"{flag}: a bootstrap interval needs at least {MIN_RESAMPLES} resamples (fewer give a "
                           f"degenerate or noisy 95% interval); use {MIN_RESAMPLES} or more (default 10000)")
    if not whole(seed) or seed < 0:  # type: ignore[operator]
        flag = f"{prefix}seed {seed!r}" if prefix else f"seed={seed!r}"
        raise EvalrunError(f"{flag}: the bootstrap seed must be a whole number >= 0, e.g. 0")


def bootstrap_ci(diffs: Sequence[float], seed: int = 0, resamples: int = 10_000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (resampled with replacement);
    ``resamples`` at least :data:`MIN_RESAMPLES`."""
    check_bootstrap(resamples, seed)
    diffs = np.asarray(diffs, dtype=float)
    n = diffs.size
    if n == 0:
        raise EvalrunError("bootstrap of zero pairs")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // n)  # bounded memory: at most ~2M indices at once
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        means[start:start + k] = diffs[rng.integers(0, n, size=(k, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_interval(diffs: Sequence[float], seed: int = 0, resamples: int = 10_000,
                    level: float = LEVEL) -> tuple[float, float, str]:
    """95% interval of the mean of paired differences: (low, high, method); NaN below 2 pairs."""
    check_bootstrap(resamples, seed)  # also below MIN_BOOTSTRAP_PAIRS: a bad value fails whatever the data
    d = np.asarray(diffs, dtype=float)
    if d.size >= MIN_BOOTSTRAP_PAIRS:
        low, high = bootstrap_ci(d, seed=seed, resamples=resamples, level=level)
        return low, high, "paired bootstrap"
    if d.size < 2:
        return math.nan, math.nan, "untestable"
    half = t_halfwidth(float(d.std(ddof=1)), d.size, level)
    return float(d.mean() - half), float(d.mean() + half), "paired t"


def intervals_disjoint(best: pd.Series, runner: pd.Series, higher: bool) -> Verdict:
    """Non-overlapping Student-t intervals of two cells' means (``mean``, ``std``, ``n``)."""
    n = int(min(best["n"], runner["n"]))
    hb, hr = t_halfwidth(best["std"], int(best["n"])), t_halfwidth(runner["std"], int(runner["n"]))
    if not (np.isfinite(hb) and np.isfinite(hr)):
        return Verdict(False, "untestable", n)
    sign = 1.0 if higher else -1.0
    gap = sign * (best["mean"] - runner["mean"]) - hb - hr
    return Verdict(bool(gap > 0), "t intervals", n, float(gap), float(gap))


def best_vs_runner_up(cells: pd.DataFrame, higher: bool, samples: dict[int, pd.Series] | None = None,
                      seed: int = 0, resamples: int = 10_000) -> tuple[int | None, Verdict | None]:
    """The index of the best cell of a column (``cells``: ``mean``, ``std``, ``n``) and its verdict.

    ``samples``: cell index -> values indexed by the pairing unit (seed, or (seed, prompt_id,
    image_index)); pairs are the units both cells have. None, or fewer than 2 shared units:
    compared by interval. Returns (None, None) with fewer than two finite cells."""
    finite = cells[np.isfinite(cells["mean"].astype(float))]
    if len(finite) < 2:
        return None, None
    order = finite["mean"].astype(float).sort_values(ascending=not higher, kind="stable")
    best, runner = order.index[0], order.index[1]
    if order.iloc[0] == order.iloc[1]:
        return best, Verdict(False, "tie", 0, 0.0, 0.0)
    if samples is not None and best in samples and runner in samples:
        a, b = samples[best], samples[runner]
        shared = a.index.intersection(b.index)
        diff = (a.loc[shared].to_numpy(float) - b.loc[shared].to_numpy(float)) * (1.0 if higher else -1.0)
        diff = diff[np.isfinite(diff)]
        if diff.size >= 2:
            low, high, method = paired_interval(diff, seed=seed, resamples=resamples)
            return best, Verdict(bool(low > 0), method, int(diff.size), low, high)
    return best, intervals_disjoint(cells.loc[best], cells.loc[runner], higher)
