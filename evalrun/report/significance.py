"""When is the best cell of a table column really the best? The rule tables bold by.

The best mean of a column is marked only when it is significantly better than the runner-up
(the second-best mean), at 95%:

- paired, when the two configurations share units: an interval of the mean paired difference must
  exclude zero. The units are independent ones (:func:`independent_units`): seeds for run-level metrics;
  for per-image metrics, prompts, each the mean of its paired image differences over shared seeds and
  images (a single prompt: its images). The images of one prompt share how each configuration does
  on that prompt; counted one by one, equal configurations came out "significant" 24% of the time at
  3 seeds and 46% at 10, against the stated 5%. With at least ``MIN_BOOTSTRAP_PAIRS`` units the
  interval is a studentized (bootstrap-t) one, :func:`bootstrap_t_ci`, which the comparisons use too;
  with fewer, a Student-t interval. The percentile bootstrap used before was too narrow for few units
  (10% false positives at 10 pairs, 6-7% at 15-50); bootstrap-t held 4-5% on normal differences and
  stays closer to 5% than Student-t on skewed ones (measured by simulation, tests/test_report_paper.py);
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
from evalrun.report.sweep import PROMPT_UNIT

MIN_BOOTSTRAP_PAIRS = 10
# Fewest bootstrap resamples accepted: a 95% percentile interval is read from the 2.5% tails, which
# hold 25 resamples each at 1000 (one resample gives a zero-width interval, "significant" whatever the data).
MIN_RESAMPLES = 1000
LEVEL = 0.95
RULE = ("bold: best in its column and significantly better than the runner-up (95%; paired over shared seeds, "
        "or over prompts for per-image metrics, each prompt's image differences averaged: bootstrap-t with at least "
        f"{MIN_BOOTSTRAP_PAIRS} units, Student-t with fewer; otherwise non-overlapping Student-t intervals "
        "over seeds); no bold: the best is within the noise")


@dataclass(frozen=True)
class Verdict:
    """The best cell against the runner-up. ``low``/``high``: the interval of the difference
    (best − runner-up, signed so that positive is better) for paired tests; for intervals, the
    gap between them (positive when they do not overlap) in both."""

    significant: bool
    method: str          # "paired bootstrap-t", "paired t", "t intervals", "tie" or "untestable"
    n: int               # test units (prompts, images or seeds), or the smaller seed count for intervals
    low: float = math.nan
    high: float = math.nan
    unit: str = "pairs"  # what the n units are (independent_units)

    def text(self) -> str:
        if self.method == "untestable":
            return "not testable (fewer than 2 seeds)"
        if self.method == "tie":
            return "tied with the runner-up"
        if self.method == "t intervals":
            return f"t intervals over seeds (n≥{self.n}): {'disjoint' if self.significant else 'overlap'}"
        if self.significant:
            verdict = ""
        elif self.high < 0:  # the best mean comes from units the runner-up lacks: on the shared ones it is worse
            verdict = " is below 0: on the units both have, the runner-up is better"
        else:
            verdict = " includes 0"
        return f"{self.method}, {self.n} {self.unit}: 95% CI of the difference [{self.low:.4g}, {self.high:.4g}]{verdict}"


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


def bootstrap_t_ci(diffs: Sequence[float], seed: int = 0, resamples: int = 10_000,
                   level: float = LEVEL) -> tuple[float, float]:
    """Studentized (bootstrap-t) interval of the mean of ``diffs``: each resample's mean is standardised by its
    own standard error, and the 2.5% tails of those t values set the interval around the observed mean
    (Efron & Tibshirani 1993, ch. 12). Resamples whose values are all equal have no t and are left out.
    ``resamples`` at least :data:`MIN_RESAMPLES`."""
    check_bootstrap(resamples, seed)
    diffs = np.asarray(diffs, dtype=float)
    n = diffs.size
    if n < 2:
        raise EvalrunError(f"a bootstrap-t interval needs at least 2 values, got {n}")
    mean, se = float(diffs.mean()), float(diffs.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return mean, mean
    rng = np.random.default_rng(seed)
    t = np.empty(resamples)
    step = max(1, 2_000_000 // n)  # bounded memory: at most ~2M indices at once
    for start in range(0, resamples, step):
        k = min(step, resamples - start)
        drawn = diffs[rng.integers(0, n, size=(k, n))]
        with np.errstate(divide="ignore", invalid="ignore"):
            t[start:start + k] = (drawn.mean(axis=1) - mean) / (drawn.std(axis=1, ddof=1) / math.sqrt(n))
    t = t[np.isfinite(t)]
    tail = (1 - level) / 2 * 100
    t_low, t_high = np.percentile(t, [tail, 100 - tail])
    return mean - float(t_high) * se, mean - float(t_low) * se


def paired_interval(diffs: Sequence[float], seed: int = 0, resamples: int = 10_000,
                    level: float = LEVEL) -> tuple[float, float, str]:
    """95% interval of the mean of paired differences (independent units, :func:`independent_units`): (low, high,
    method); NaN below 2 units."""
    check_bootstrap(resamples, seed)  # also below MIN_BOOTSTRAP_PAIRS: a bad value fails whatever the data
    d = np.asarray(diffs, dtype=float)
    if d.size >= MIN_BOOTSTRAP_PAIRS:
        low, high = bootstrap_t_ci(d, seed=seed, resamples=resamples, level=level)
        return low, high, "paired bootstrap-t"
    if d.size < 2:
        return math.nan, math.nan, "untestable"
    half = t_halfwidth(float(d.std(ddof=1)), d.size, level)
    return float(d.mean() - half), float(d.mean() + half), "paired t"


def independent_units(diffs: pd.Series, prompt_level: str = PROMPT_UNIT) -> tuple[np.ndarray, str]:
    """Paired differences as the test's independent units, and what they are. Per-image differences (a level
    ``prompt_level`` in the index) are averaged per prompt, over the seeds and images both sides have; with a
    single prompt its images are the units. Run-level differences are averaged per seed when they are paired
    on other keys too (ddim vs dpm at 2 and at 3 steps: the two runs of a seed share their starting noise);
    with a single seed, or only seeds, the run pairs are the units."""
    d = diffs[np.isfinite(diffs.to_numpy(dtype=float))]
    names = list(d.index.names or [])
    if prompt_level not in names:
        if "seed" in names and len(names) > 1 and d.index.get_level_values("seed").nunique() >= 2:
            return d.groupby(level="seed", sort=False).mean().to_numpy(dtype=float), "seeds"
        return d.to_numpy(dtype=float), "pairs"
    if d.index.get_level_values(prompt_level).nunique() < 2:
        return d.to_numpy(dtype=float), "images"
    return d.groupby(level=prompt_level, sort=False).mean().to_numpy(dtype=float), "prompts"


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
        diff = pd.Series((a.loc[shared].to_numpy(float) - b.loc[shared].to_numpy(float)) * (1.0 if higher else -1.0),
                         index=shared)
        units, unit = independent_units(diff)
        if units.size >= 2:
            low, high, method = paired_interval(units, seed=seed, resamples=resamples)
            return best, Verdict(bool(low > 0), method, int(units.size), low, high, unit)
    return best, intervals_disjoint(cells.loc[best], cells.loc[runner], higher)
