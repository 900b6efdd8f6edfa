"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a polynomial
kernel, averaged over random subsets, in float64.

Subsets are drawn exactly as torch-fidelity draws them (``numpy.random.RandomState(seed)``,
``choice(n, size, replace=False)`` for set 1 then set 2, per subset), so evalrun's KID with
seed s is torch-fidelity's KID with ``rng_seed=s``. torchmetrics draws from the global
torch RNG instead, which makes its KID depend on whatever ran before.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef: float = 1.0) -> np.ndarray:
    """(gamma <x, y> + coef)^degree; gamma defaults to 1 / feature dimension."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """The estimator of torch-fidelity's ``mmd_est="unbiased"`` and torchmetrics: diagonals of
    k_xx and k_yy left out, the full cross term kept."""
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def subset_indices(n1: int, n2: int, subset_size: int, subsets: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if not 2 <= subset_size <= min(n1, n2):
        raise ValueError(f"KID subset_size must be in [2, min(N1, N2)={min(n1, n2)}], got {subset_size}")
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(subsets):
        out.append((rng.choice(n1, subset_size, replace=False), rng.choice(n2, subset_size, replace=False)))
    return out


def kid_subsets(f1: np.ndarray, f2: np.ndarray, indices: list[tuple[np.ndarray, np.ndarray]], degree: int = 3,
                gamma: float | None = None, coef: float = 1.0) -> np.ndarray:
    """Per-subset MMD^2 values for the given (rows of f1, rows of f2) index pairs."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    values = []
    for i1, i2 in indices:
        x, y = f1[i1], f2[i2]
        values.append(mmd2_unbiased(polynomial_kernel(x, x, degree, gamma, coef), polynomial_kernel(x, y, degree, gamma, coef),
                                    polynomial_kernel(y, y, degree, gamma, coef)))
    return np.asarray(values)


def kid(f1: np.ndarray, f2: np.ndarray, subset_size: int, subsets: int, seed: int, degree: int = 3,
        gamma: float | None = None, coef: float = 1.0) -> tuple[float, float]:
    """(mean, std with ddof=0) of MMD^2 over seeded subsets, as torch-fidelity and torchmetrics report."""
    values = kid_subsets(f1, f2, subset_indices(len(f1), len(f2), subset_size, subsets, seed), degree, gamma, coef)
    return float(values.mean()), float(values.std())
