"""Diversity of a set of embeddings: the Vendi score and the mean pairwise cosine distance, in
float64, for a whole set or per group (e.g. the images of each prompt).

Vendi score (Friedman & Dieng, TMLR 2023, "The Vendi Score: A Diversity Evaluation Metric for
Machine Learning"): with K the n x n similarity matrix (K_ii = 1) and lambda_i the eigenvalues
of K / n (non-negative, summing to 1),

    VS_q = exp(H_q(lambda)),  H_1 = -sum_i lambda_i log lambda_i  (Shannon, the default q = 1),
    H_q = log(sum_i lambda_i^q) / (1 - q),  H_inf = -log max_i lambda_i,

the effective number of distinct items: 1 for n identical embeddings, n for n mutually
orthogonal ones. Here K is the cosine-similarity kernel, K = X X^T with the rows of X
L2-normalised: the package's ``vendi_score.vendi.score_X(X, normalize=True)`` (and
``score_dual``). K / n and X^T X / n have the same non-zero eigenvalues, so the smaller of
the two is decomposed. Eigenvalues below the round-off of the decomposition (max * max(n, d) * eps,
numpy's rank tolerance) are zero: the package keeps those > 0, and at q < 1 their powers add up
(n identical images scored 1.02 at q = 0.1, and the n x n and d x d forms disagreed).

Mean pairwise cosine distance: mean of 1 - cos(x_i, x_j) over the n(n-1)/2 pairs i < j,
computed as 1 - (|sum_i u_i|^2 - n) / (n(n-1)) with u_i the unit rows. (The package's
``intdiv_X`` averages 1 - K_ij over all n^2 ordered pairs, the zero diagonal included:
intdiv = (n - 1)/n * this.)

Zero embeddings have no direction: they are refused rather than silently given one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def unit_rows(embeddings) -> np.ndarray:
    """Rows L2-normalised in float64; raises on an empty set or a zero or non-finite row."""
    x = np.asarray(embeddings, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"embeddings must be a non-empty (n, d) array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} embedding row(s) are zero or non-finite (first: row {int(np.argmax(bad))})")
    return x / norms[:, None]


def similarity_eigenvalues(embeddings) -> np.ndarray:
    """Eigenvalues of K / n (K the cosine-similarity matrix), from the smaller of the n x n
    and d x d Gram matrices: min(n, d) values, ascending."""
    u = unit_rows(embeddings)
    n, d = u.shape
    gram = u @ u.T if n <= d else u.T @ u
    eigenvalues = np.linalg.eigvalsh((gram + gram.T) / 2) / n
    eigenvalues[eigenvalues < eigenvalues.max() * max(n, d) * np.finfo(np.float64).eps] = 0.0
    return eigenvalues


def entropy(p, q: float = 1.0) -> float:
    """Renyi entropy of order q of the weights ``p`` (Shannon at q = 1, min-entropy at inf),
    over the entries > 0, as the package's ``entropy_q``."""
    p = np.asarray(p, np.float64)
    positive = p[p > 0]
    if q == 1:
        return float(-(positive * np.log(positive)).sum())
    if q == np.inf:
        return float(-np.log(p.max()))
    if q <= 0:
        raise ValueError(f"q must be > 0, got {q}")
    return float(np.log((positive ** q).sum()) / (1 - q))


def vendi_score(embeddings, q: float = 1.0) -> float:
    """Vendi score of the set of ``embeddings`` (n, d) under the cosine kernel."""
    return float(np.exp(entropy(similarity_eigenvalues(embeddings), q)))


def mean_pairwise_cosine_distance(embeddings) -> float:
    """Mean of 1 - cos over distinct pairs; NaN for a single embedding (no pairs)."""
    u = unit_rows(embeddings)
    n = len(u)
    if n < 2:
        return float("nan")
    s = u.sum(0)
    return float(1.0 - (s @ s - n) / (n * (n - 1)))


def _groups(embeddings, groups: Sequence[Hashable]) -> dict[Hashable, np.ndarray]:
    x = np.asarray(embeddings)
    if len(groups) != len(x):
        raise ValueError(f"groups has {len(groups)} labels for {len(x)} embeddings")
    out: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        out.setdefault(g, []).append(i)
    return {g: x[idx] for g, idx in out.items()}


def vendi_per_group(embeddings, groups: Sequence[Hashable], q: float = 1.0) -> dict[Hashable, float]:
    """Vendi score of each group's embeddings (e.g. ``groups`` = the prompt id of each image),
    in first-appearance order of the groups; a one-image group scores 1.0."""
    return {g: vendi_score(x, q) for g, x in _groups(embeddings, groups).items()}


def mean_pairwise_cosine_distance_per_group(embeddings, groups: Sequence[Hashable]) -> dict[Hashable, float]:
    """Mean pairwise cosine distance within each group (NaN for a one-image group)."""
    return {g: mean_pairwise_cosine_distance(x) for g, x in _groups(embeddings, groups).items()}
