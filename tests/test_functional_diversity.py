"""Vendi score and mean pairwise cosine distance against direct numpy computations; Pareto
fronts on a hand-built table with known dominated rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from evalrun.metrics.functional.pareto import non_dominated, pareto_front, pareto_order
from evalrun.metrics.functional.vendi import (
    mean_pairwise_cosine_distance,
    mean_pairwise_cosine_distance_per_group,
    similarity_eigenvalues,
    vendi_per_group,
    vendi_score,
)


def vendi_direct(x, q=1.0):
    """Friedman & Dieng: eigenvalues of K/n, K the n x n cosine-similarity matrix."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    lam = np.linalg.eigvalsh(u @ u.T / len(x))
    lam = lam[lam > lam.max() * len(x) * np.finfo(float).eps]  # numpy's rank tolerance: round-off is not a direction
    if q == 1:
        return np.exp(-(lam * np.log(lam)).sum())
    if q == np.inf:
        return 1.0 / lam.max()
    return np.exp(np.log((lam ** q).sum()) / (1 - q))


def test_vendi_known_values():
    assert vendi_score(np.tile([[0.3, -1.2, 2.0]], (7, 1))) == pytest.approx(1.0, abs=1e-12)
    assert vendi_score(np.eye(5) * [1, 2, 3, 4, 5]) == pytest.approx(5.0, abs=1e-12)
    assert vendi_score(np.eye(12)[:, :]) == pytest.approx(12.0, abs=1e-12)
    # Two orthogonal clusters of sizes 3 and 1: weights 3/4, 1/4.
    x = np.array([[1.0, 0], [2.0, 0], [0.5, 0], [0, 1.0]])
    assert vendi_score(x) == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))), abs=1e-12)


def test_vendi_below_order_1_counts_no_round_off_eigenvalues():
    """Orders q < 1 weigh tiny eigenvalues heavily (sqrt(1e-17) = 3e-9 each): round-off ones made 8
    identical images score 1.024 at q = 0.1."""
    same = np.repeat(np.random.default_rng(0).normal(size=(1, 512)), 8, axis=0)
    for q in (0.1, 0.5):
        assert vendi_score(same, q) == pytest.approx(1.0, abs=1e-12)
    # Orthogonal clusters of 3 and 1 in 5 dimensions: weights 3/4 and 1/4, VS_0.5 = (sum sqrt(p))^2.
    x = np.array([[1.0, 0, 0, 0, 0], [2.0, 0, 0, 0, 0], [0.5, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]])
    assert vendi_score(x, 0.5) == pytest.approx((np.sqrt(0.75) + np.sqrt(0.25)) ** 2, abs=1e-12)


@pytest.mark.parametrize("n, d", [(30, 8), (8, 30)])   # both the d x d and the n x n route
def test_vendi_matches_direct_eigenvalues(n, d):
    """With n > d the direct n x n matrix has n - d eigenvalues that are round-off (+-1e-17): both
    routes count only eigenvalues above the decomposition's round-off, so they agree at every order."""
    x = np.random.default_rng(n).normal(size=(n, d))
    for q in (0.5, 1.0, 2.0, np.inf):
        assert vendi_score(x, q) == pytest.approx(vendi_direct(x, q), rel=1e-12)
    assert similarity_eigenvalues(x).sum() == pytest.approx(1.0, abs=1e-12)


def test_mean_pairwise_cosine_distance():
    x = np.random.default_rng(0).normal(size=(9, 4))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    direct = np.mean([1 - u[i] @ u[j] for i, j in itertools.combinations(range(9), 2)])
    assert mean_pairwise_cosine_distance(x) == pytest.approx(direct, abs=1e-14)
    # The Vendi package's intdiv_X averages over all n^2 ordered pairs, diagonal included.
    assert 1 - (u @ u.T).mean() == pytest.approx(8 / 9 * direct, abs=1e-14)
    assert mean_pairwise_cosine_distance(np.tile(x[:1], (4, 1))) == pytest.approx(0.0, abs=1e-14)
    assert np.isnan(mean_pairwise_cosine_distance(x[:1]))


def test_per_group_helpers():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 5))
    groups = ["b", "a", "b", "b", "c", "a", "b", "a", "a", "b"]
    vendi = vendi_per_group(x, groups)
    assert list(vendi) == ["b", "a", "c"]
    for g in vendi:
        rows = [i for i, label in enumerate(groups) if label == g]
        assert vendi[g] == pytest.approx(vendi_direct(x[rows]), rel=1e-12)
    assert vendi["c"] == pytest.approx(1.0)
    dist = mean_pairwise_cosine_distance_per_group(x, groups)
    assert dist["a"] == pytest.approx(mean_pairwise_cosine_distance(x[[1, 5, 7, 8]]))
    assert np.isnan(dist["c"])
    with pytest.raises(ValueError, match="labels"):
        vendi_per_group(x, groups[:-1])


def test_zero_embedding_refused():
    with pytest.raises(ValueError, match="zero"):
        vendi_score(np.array([[1.0, 0], [0, 0]]))


# --------------------------------------------------------------------------- Pareto

#           name   cost  quality (higher better)
TABLE = [("H", 0.5, 0.10),   # cheapest: front
         ("A", 1.0, 0.50),   # front
         ("B", 2.0, 0.70),   # front
         ("C", 2.0, 0.60),   # same cost as B, worse quality: dominated
         ("D", 3.0, 0.70),   # same quality as B, dearer: dominated
         ("J", 3.0, 0.65),   # dominated by B
         ("E", 4.0, 0.90),   # front
         ("F", 4.0, 0.90),   # exact tie with E: both stay
         ("G", 5.0, 0.80),   # dominated by E
         ("I", np.nan, 1.0)]  # missing cost: never on the front, dominates nothing
FRONT = {"H", "A", "B", "E", "F"}


def brute_force(points, higher):
    p = np.where(higher, points, -points)
    ok = ~np.isnan(p).any(1)
    return np.array([ok[i] and not any(ok[j] and (p[j] >= p[i]).all() and (p[j] > p[i]).any()
                                       for j in range(len(p))) for i in range(len(p))])


def test_pareto_hand_table():
    names = [r[0] for r in TABLE]
    cost, quality = np.array([r[1] for r in TABLE]), np.array([r[2] for r in TABLE])
    mask = pareto_front(cost, quality)
    assert {n for n, m in zip(names, mask) if m} == FRONT
    assert [names[i] for i in pareto_order(cost, quality)] == ["H", "A", "B", "E", "F"]
    # FID-like quality (lower better): negate the qualities, the same front.
    assert np.array_equal(pareto_front(cost, -quality, quality_higher_is_better=False), mask)
    assert np.array_equal(mask, brute_force(np.stack([cost, quality], 1), [False, True]))


def test_pareto_random_against_brute_force():
    rng = np.random.default_rng(2)
    points = rng.integers(0, 6, size=(80, 3)).astype(float)   # many ties
    higher = [True, False, True]
    assert np.array_equal(non_dominated(points, higher), brute_force(points, np.array(higher)))
    with pytest.raises(ValueError, match="entries"):
        non_dominated(points, [True])
