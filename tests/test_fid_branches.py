"""The FID paths a small test run never reaches: more images than feature dimensions (running float64
sums, the full D x D trace by Cholesky) checked against numpy and scipy on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from evalrun.metrics.functional.fid import GaussianStats, StatsAccumulator, frechet_distance_info


def numpy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The textbook formula with scipy's sqrtm (fine at small D), float64."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real)


def test_full_rank_running_sums_equal_numpy_statistics():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 16)) * np.linspace(0.5, 3, 16) + rng.normal(size=16)
    acc = StatsAccumulator()
    for start in range(0, 300, 64):  # the run's chunks of 64 (and a partial last one)
        acc.add(features[start:start + 64].astype(np.float32))
    stats = acc.stats()
    assert acc.rows is None and stats.factor is None  # n > D: only the sums are kept
    f = features.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats.mu, f.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(f, rowvar=False), rtol=1e-9, atol=1e-12)


def test_full_rank_fid_uses_cholesky_and_equals_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    b = rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)) + 0.3
    sa, sb = StatsAccumulator(), StatsAccumulator()
    sa.add(a)
    sb.add(b)
    value, method = frechet_distance_info(sa.stats(), sb.stats())
    assert method.startswith("cholesky") and value == pytest.approx(numpy_fid(a, b), rel=1e-9)
    self_value, self_method = frechet_distance_info(sa.stats(), sa.stats())
    assert self_value == 0.0 or self_value < 1e-9 * value  # a set against itself: zero, never negative
    assert self_value >= 0


def test_low_rank_and_full_rank_agree_where_both_apply():
    rng = np.random.default_rng(2)
    f1, f2 = rng.normal(size=(40, 8)), rng.normal(size=(60, 8)) + 0.1
    exact = frechet_distance_info(GaussianStats.from_features(f1), GaussianStats.from_features(f2))[0]
    sums = StatsAccumulator()
    sums.add(f1)
    assert frechet_distance_info(sums.stats(), GaussianStats.from_features(f2))[0] == pytest.approx(exact, rel=1e-9)
