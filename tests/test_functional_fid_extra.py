"""The Cholesky trace of the square root (against fid.py and an mpmath reference), FID-infinity
(against Chong & Forsyth's sizes, draws and fit) and bootstrap intervals (fast FID path
against materialised resamples)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evalrun.metrics.functional.bootstrap import bootstrap_fid, bootstrap_interval, percentile_interval
from evalrun.metrics.functional.fid import (
    GaussianStats,
    frechet_distance,
    frechet_distance_info,
    trace_sqrt_cholesky,
    trace_sqrt_eigh,
    trace_sqrt_product,
)
from evalrun.metrics.functional.fid_infinity import (
    InfinityFit,
    fid_infinity,
    fit_inverse_n,
    frechet_to,
    infinity_sizes,
    subset_indices,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def stats(sigma, mu=None):
    return GaussianStats(np.zeros(len(sigma)) if mu is None else mu, sigma, None)


def power_law(d, alpha, rng, floor=0.0):
    """Random-basis covariance with eigenvalues k^-alpha, like Inception pool_3 spectra."""
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s = (q * np.maximum(np.arange(1, d + 1.0) ** -alpha, floor)) @ q.T
    return (s + s.T) / 2


# --------------------------------------------------------------------------- Cholesky route

@pytest.mark.parametrize("d, alpha", [(24, 2.0), (32, 4.0)])
def test_cholesky_trace_against_mpmath(d, alpha):
    """The exact tr sqrt(S1 S2) of the float64 inputs, by sqrt(S1) S2 sqrt(S1) at 30 digits.
    Measured errors (relative): Cholesky ~1e-15 at both; fid.py's eigh form ~4e-16 at D=24
    (cond 576) and ~4e-12 at D=32, alpha 4 (cond 1e6): the eigenvector route loses accuracy
    on small eigenvalues, the Cholesky route does not."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 30
    rng = np.random.default_rng(d)
    s1, s2 = power_law(d, alpha, rng), power_law(d, alpha, rng)
    e, q = mp.eigsy(mp.matrix(s1.tolist()))
    root = q * mp.diag([mp.sqrt(max(x, 0)) for x in e]) * q.T
    reference = float(sum(mp.sqrt(max(x, 0)) for x in mp.eigsy(root * mp.matrix(s2.tolist()) * root,
                                                                  eigvals_only=True)))
    assert trace_sqrt_cholesky(s1, s2) == pytest.approx(reference, rel=1e-13)
    assert trace_sqrt_product(stats(s1), stats(s2))[0] == pytest.approx(reference, rel=1e-13)  # the default route
    assert trace_sqrt_eigh(stats(s1), stats(s2)) == pytest.approx(reference, rel=1e-10)


def test_cholesky_agrees_with_eigh_form():
    rng = np.random.default_rng(0)
    for _ in range(3):
        s1, s2 = power_law(64, 1.5, rng), power_law(64, 1.5, rng)
        value, method = trace_sqrt_product(stats(s1), stats(s2))
        assert method.startswith("cholesky") and value == pytest.approx(trace_sqrt_eigh(stats(s1), stats(s2)), rel=1e-12)
    a = stats(s1, rng.normal(size=64))
    fid, method = frechet_distance_info(a, a)
    assert 0 <= fid < 1e-12  # clamped at 0 when round-off makes it negative, and it says so


def test_cholesky_fallbacks():
    rng = np.random.default_rng(1)
    # n <= D: the exact low-rank form.
    small, big = GaussianStats.from_features(rng.normal(size=(10, 16))), GaussianStats.from_features(rng.normal(size=(200, 16)))
    assert trace_sqrt_product(small, big)[1].startswith("low-rank")
    # S1 singular without a factor: the Cholesky factor of S2 is used.
    singular = power_law(16, 1.0, rng)
    w, v = np.linalg.eigh(singular)
    singular = (v * np.where(np.arange(16) < 4, 0.0, w)) @ v.T
    full = power_law(16, 1.0, rng)
    value, method = trace_sqrt_product(stats(singular), stats(full))
    # Both routes take square roots of the 4 round-off eigenvalues of a null space
    # (sqrt(1e-17) ~ 3e-9 each): they agree to that, not to 1e-15.
    assert method.endswith("S2") and value == pytest.approx(trace_sqrt_eigh(stats(singular), stats(full)), rel=1e-7)
    # Both singular: the eigh form.
    value, method = trace_sqrt_product(stats(singular), stats(singular))
    assert "both covariances singular" in method
    assert value == pytest.approx(np.trace(singular), rel=1e-7)
    assert trace_sqrt_cholesky(singular, singular) is None


# --------------------------------------------------------------------------- FID-infinity

def test_infinity_recovers_intercept_of_a_plus_b_over_n():
    features = np.zeros((20000, 2))
    fit = fid_infinity(features, lambda f: 3.25 + 1234.5 / len(f))
    assert isinstance(fit, InfinityFit) and len(fit.sizes) == 15
    assert fit.value == pytest.approx(3.25, abs=1e-9) and fit.slope == pytest.approx(1234.5, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_infinity_sizes_draws_and_fit_as_chong_forsyth():
    assert np.array_equal(infinity_sizes(50000), np.linspace(5000, 50000, 15).astype("int32"))
    assert np.array_equal(infinity_sizes(12345, 1000, 7), np.linspace(1000, 12345, 7).astype("int32"))
    # Their loop: np.random.seed(s) then, per size, np.random.shuffle(fake_act) in place, first N rows.
    acts = np.random.default_rng(0).normal(size=(300, 3))
    sizes = infinity_sizes(300, 50, 6)
    np.random.seed(7)
    theirs, shuffled = [], acts.copy()
    for n in sizes:
        np.random.shuffle(shuffled)
        theirs.append(shuffled[:n].copy())
    for rows, subset in zip(subset_indices(300, sizes, 7), theirs):
        assert np.array_equal(acts[rows], subset)
    # The fit: ordinary least squares with intercept (their sklearn LinearRegression).
    values = 2.0 + 50.0 / sizes + np.random.default_rng(1).normal(scale=0.01, size=len(sizes))
    slope, intercept = np.polyfit(1.0 / sizes, values, 1)
    assert fit_inverse_n(sizes, values)[:2] == pytest.approx((intercept, slope), rel=1e-10)
    with pytest.raises(ValueError, match="min_n"):
        infinity_sizes(5000)


def test_infinity_removes_fid_bias():
    """Two samples of one distribution: true FID 0, FID_N ~ c/N > 0; FID_inf is much closer to 0."""
    rng = np.random.default_rng(2)
    ref = GaussianStats.from_features(rng.normal(size=(20000, 6)))
    fit = fid_infinity(rng.normal(size=(4000, 6)), frechet_to(ref), min_n=400, num_points=10, seed=0)
    assert fit.values[-1] > 0 and abs(fit.value) < 0.3 * fit.values[-1]
    assert fit.slope > 0


# --------------------------------------------------------------------------- bootstrap

def test_bootstrap_generic_contains_value_and_narrows():
    rng = np.random.default_rng(3)
    widths = []
    for n in (100, 1600):
        x = rng.normal(loc=2.0, size=(n, 1))
        low, high, values = bootstrap_interval(lambda g: float(g.mean()), x, n_resamples=400, seed=0)
        assert low <= x.mean() <= high and len(values) == 400
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5      # ~1/sqrt(N): a factor 4 in theory
    again = bootstrap_interval(lambda g: float(g.mean()), x, n_resamples=50, seed=0)
    other = bootstrap_interval(lambda g: float(g.mean()), x, n_resamples=50, seed=1)
    assert np.array_equal(again.values, bootstrap_interval(lambda g: float(g.mean()), x, n_resamples=50, seed=0).values)
    assert not np.array_equal(again.values, other.values)


def fid_of(gen, ref):
    return frechet_distance(GaussianStats.from_features(gen),
                            ref if isinstance(ref, GaussianStats) else GaussianStats.from_features(ref))


@pytest.mark.parametrize("n, m, d", [(300, 250, 8), (20, 30, 40)])
def test_bootstrap_fid_weighted_equals_materialised(n, m, d):
    """Multinomial weights give the very resamples that copying rows gives (same seed)."""
    rng = np.random.default_rng(4)
    gen, ref = rng.normal(size=(n, d)) + 0.3, rng.normal(size=(m, d)) * 1.1
    fixed = GaussianStats.from_features(ref)
    for reference, resample in ((fixed, False), (ref, False), (ref, True)):
        slow = bootstrap_interval(fid_of, gen, reference if resample else fixed, resample_reference=resample,
                                  n_resamples=15, seed=5)
        fast = bootstrap_fid(gen, reference, resample_reference=resample, n_resamples=15, seed=5)
        np.testing.assert_allclose(fast.values, slow.values, rtol=1e-10)


def test_bootstrap_fid_contains_value_and_narrows():
    rng = np.random.default_rng(6)
    widths = []
    for n in (200, 3200):
        gen, ref = rng.normal(size=(n, 4)) + 0.5, rng.normal(size=(n, 4))
        full = fid_of(gen, ref)
        low, high, _ = bootstrap_fid(gen, ref, resample_reference=True, n_resamples=200, seed=0)
        assert low <= full <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5


def test_percentile_interval():
    values = np.arange(101.0)
    assert percentile_interval(values, 0.9) == pytest.approx((5.0, 95.0), abs=1e-12)
    with pytest.raises(ValueError, match="confidence"):
        percentile_interval(values, 1.0)
