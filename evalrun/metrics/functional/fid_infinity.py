"""FID-infinity (Chong & Forsyth, CVPR 2020, "Effectively Unbiased FID and Inception Score and
where to find them"): FID_N is, to first order, linear in 1/N,

    FID_N = FID_inf + slope / N,

so FID is computed on subsets of the generated features at several sizes N and a straight
line is fitted by least squares against 1/N; its intercept (1/N -> 0) is FID_inf, the FID of
infinitely many samples, free of the sample-size bias that makes FID_N depend on N.

Sizes and subsets as their code (mchong6/FID_IS_infinity, ``score_infinity.py``,
``calculate_FID_infinity_path``) picks them: ``np.linspace(min_fake, n, num_points)
.astype('int32')`` (defaults 5000 and 15 points), and for each size in turn the whole
feature array is shuffled in place (``np.random.shuffle``; shuffles compound from one size
to the next) and its first N rows are taken: a subset without replacement, despite the
comment in their code. Here the shuffles come from ``np.random.RandomState(seed)`` applied
to an index array, which draws the same permutations as their ``np.random.seed(seed)``
followed by their shuffles of the rows (checked in the tests). The fit is ordinary least
squares with an intercept, as their ``sklearn.linear_model.LinearRegression``.

The FID itself is a caller-supplied function of a subset of generated features, so any
Frechet-distance backend (fid.py, another feature space) can be used;
``frechet_to`` builds one against fixed reference statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evalrun.metrics.functional.fid import GaussianStats, frechet_distance


@dataclass(frozen=True)
class InfinityFit:
    """The fit of metric values against 1/N: ``value`` is the intercept (FID_inf)."""

    value: float
    slope: float
    r2: float
    sizes: np.ndarray    # N of each subset
    values: np.ndarray   # the metric on each subset


def infinity_sizes(n: int, min_n: int = 5000, num_points: int = 15) -> np.ndarray:
    """Subset sizes as Chong & Forsyth's code: ``linspace(min_n, n, num_points)`` truncated to int."""
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2 to fit a line, got {num_points}")
    if not 2 <= min_n < n:
        raise ValueError(f"need 2 <= min_n < N (their code asserts N > min_fake), got min_n={min_n}, N={n}")
    return np.linspace(min_n, n, num_points).astype("int32")


def fit_inverse_n(sizes, values) -> tuple[float, float, float]:
    """Least-squares line ``values = intercept + slope / sizes``: (intercept, slope, R^2)."""
    x = 1.0 / np.asarray(sizes, np.float64)
    y = np.asarray(values, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(np.unique(x)) < 2:
        raise ValueError("need matching 1-D sizes and values with at least two distinct sizes")
    design = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - (intercept + slope * x)
    ss_res, ss_tot = float(residual @ residual), float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return float(intercept), float(slope), r2


def subset_indices(n: int, sizes, seed: int) -> list[np.ndarray]:
    """The rows each size uses: the first N of an index array shuffled in place, once per size."""
    rng = np.random.RandomState(seed)
    order = np.arange(n)
    out = []
    for size in sizes:
        rng.shuffle(order)
        out.append(order[:size].copy())
    return out


def fid_infinity(features, fid_of: Callable[[np.ndarray], float], min_n: int = 5000, num_points: int = 15,
                 seed: int = 0) -> InfinityFit:
    """FID_inf of generated ``features`` (N, D): ``fid_of(subset)`` on subsets of the sizes above,
    then the fit against 1/N."""
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    sizes = infinity_sizes(len(features), min_n, num_points)
    values = np.array([float(fid_of(features[rows])) for rows in subset_indices(len(features), sizes, seed)])
    intercept, slope, r2 = fit_inverse_n(sizes, values)
    return InfinityFit(intercept, slope, r2, sizes, values)


def frechet_to(reference: GaussianStats, device="cpu") -> Callable[[np.ndarray], float]:
    """``fid_of`` for ``fid_infinity``: FID (fid.py) of a subset of features against ``reference``."""
    return lambda subset: frechet_distance(GaussianStats.from_features(subset), reference, device)
