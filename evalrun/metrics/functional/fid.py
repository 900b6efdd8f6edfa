"""Frechet distance between Gaussians fitted to features (FID), in float64.

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

The trace of the matrix square root is taken from eigenvalues, never ``scipy.linalg.sqrtm``
(minutes on CPU for 2048x2048, spurious imaginary parts in scipy 1.11-1.12, and its
``disp`` argument is gone in recent releases). ``S1 S2`` is not symmetric, so instead of
``eigvals(S1 S2)`` (complex; what torchmetrics and torch-fidelity use) we take a symmetric
PSD matrix with the same non-zero eigenvalues, whose ``eigvalsh`` is real:

- when a set has n <= D samples its covariance is ``A^T A`` with ``A`` the n x D centred
  features / sqrt(n-1), and ``A S2 A^T`` (n x n) has exactly the non-zero eigenvalues; when
  both sets do, tr sqrt(S1 S2) is the sum of the singular values of ``A B^T``. These avoid
  the round-off of the D x D forms from the ~D-n zero eigenvalues (about 2e-6 of the trace
  measured at n=24, where FID of a set against itself came out -0.07 instead of 0);
- otherwise the Cholesky route: with S1 = L L^T, S1 S2 is similar to the symmetric PSD
  L^T S2 L, so tr sqrt(S1 S2) = sum sqrt(eigvalsh(L^T S2 L)). At D = 2048 it takes 1.5-1.6 s
  where ``sqrt(S1) S2 sqrt(S1)`` (two eigendecompositions, eigenvectors included) took 4.0 s on
  one CPU thread, with relative error 1e-14..1e-13 against 1e-12..6e-10 on power-law spectra
  like Inception's (``bench/fid_sqrt.py``; mpmath at D=32, condition 1e6: 3e-15 vs 4e-12).
  When S1 has no Cholesky factor (rank-deficient features), S2's is tried (the trace is
  symmetric in S1, S2); when neither has one, the eigh form, negative eigenvalues clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class GaussianStats:
    """Mean and covariance (ddof=1, as pytorch-fid, torch-fidelity and torchmetrics) of n
    features; ``factor`` (n x D, ``sigma = factor.T @ factor``) is kept while n <= D."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None  # None when read from a file that does not say
    factor: np.ndarray | None = None

    @classmethod
    def from_features(cls, features: np.ndarray | torch.Tensor) -> "GaussianStats":
        f = torch.as_tensor(features).double().cpu().numpy()
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"need at least 2 feature rows (N, D), got shape {f.shape}")
        mu = f.mean(axis=0)
        factor = (f - mu) / np.sqrt(len(f) - 1)
        return cls(mu, factor.T @ factor, len(f), factor if len(f) <= f.shape[1] else None)


class StatsAccumulator:
    """Running float64 sums of features and their outer products, so FID keeps a D x D
    matrix rather than every feature row (torchmetrics does the same). Rows are also kept
    while there are at most D of them, for the exact low-rank trace."""

    def __init__(self) -> None:
        self.n = 0
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None
        self.rows: list[torch.Tensor] | None = []

    def add(self, features: np.ndarray | torch.Tensor) -> None:
        f = torch.as_tensor(features).double().cpu()
        if self.total is None:
            self.total = torch.zeros(f.shape[1], dtype=torch.float64)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64)
        self.total += f.sum(0)
        self.outer += f.T @ f
        self.n += len(f)
        if self.rows is not None:
            self.rows = self.rows + [f] if self.n <= f.shape[1] else None

    def stats(self) -> GaussianStats:
        if self.n < 2:
            raise ValueError(f"FID needs at least 2 images, got {self.n}")
        if self.rows:
            return GaussianStats.from_features(torch.cat(self.rows))
        mu = self.total / self.n
        sigma = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return GaussianStats(mu.numpy(), ((sigma + sigma.T) / 2).numpy(), self.n)


def _t(x: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)


def _sqrt_eigvalsh_sum(m: torch.Tensor) -> float:
    # Exact eigenvalues are >= 0: negative ones are round-off.
    return float(torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum())


def cholesky_factor(sigma, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """Lower-triangular L with L L^T = sigma (float64), or None when sigma is not numerically positive definite."""
    s = _t(sigma, device)
    factor, info = torch.linalg.cholesky_ex((s + s.T) / 2)
    return factor if int(info) == 0 else None


def trace_sqrt_from_factor(factor: torch.Tensor, sigma2) -> float:
    """sum sqrt(eig(F^T S2 F)) = tr sqrt(F F^T S2) for any factor F with S1 = F F^T (on F's device)."""
    return _sqrt_eigvalsh_sum(factor.T @ _t(sigma2, factor.device) @ factor)


def trace_sqrt_cholesky(sigma1, sigma2, device: torch.device | str = "cpu") -> float | None:
    """tr sqrt(S1 S2) from the Cholesky factor of S1 (or of S2 when S1 has none); None when neither has one."""
    for first, second in ((sigma1, sigma2), (sigma2, sigma1)):
        factor = cholesky_factor(first, device)
        if factor is not None:
            return trace_sqrt_from_factor(factor, second)
    return None


def trace_sqrt_eigh(a: GaussianStats, b: GaussianStats, device: torch.device | str = "cpu") -> float:
    """tr sqrt(Sa Sb) as eigvalsh(sqrt(S1) S2 sqrt(S1)) (evalrun 0.1's full-rank form, the fallback)."""
    s1, s2 = _t(a.sigma, device), _t(b.sigma, device)
    w, v = torch.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.T
    return _sqrt_eigvalsh_sum(root1 @ s2 @ root1)


def trace_sqrt_product(a: GaussianStats, b: GaussianStats, device: torch.device | str = "cpu") -> tuple[float, str]:
    """(tr sqrt(Sa Sb), method) on ``device`` (the GPU does the decompositions if given): the exact
    low-rank form when a set has n <= D samples, else the Cholesky route, else the eigh form."""
    if a.factor is None and b.factor is not None:
        a, b = b, a
    if a.factor is not None and b.factor is not None:
        # sqrt of the eigenvalues of A Sb A^T = (A B^T)(A B^T)^T are the singular values of A B^T.
        inner = _t(a.factor, device) @ _t(b.factor, device).T
        return float(torch.linalg.svdvals(inner).sum()), "low-rank: nuclear norm of A B^T (A, B: centred features/sqrt(n-1))"
    if a.factor is not None:
        fa = _t(a.factor, device)
        return _sqrt_eigvalsh_sum(fa @ _t(b.sigma, device) @ fa.T), "low-rank: eigvalsh(A Sb A^T), A = centred features/sqrt(n-1)"
    for first, second, name in ((a, b, "S1"), (b, a, "S2")):
        factor = cholesky_factor(first.sigma, device)
        if factor is not None:
            return trace_sqrt_from_factor(factor, second.sigma), f"cholesky: eigvalsh(L^T S L), L L^T = {name}"
    return trace_sqrt_eigh(a, b, device), "eigvalsh(sqrt(S1) S2 sqrt(S1)) (no Cholesky factor: both covariances singular)"


def frechet_distance_info(a: GaussianStats, b: GaussianStats, device: torch.device | str = "cpu") -> tuple[float, str]:
    """(FID, how the trace of the square root was computed)."""
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    for which, stats in (("first", a), ("second", b)):  # the eigensolver fails on them with a LinAlgError
        if not (np.isfinite(stats.mu).all() and np.isfinite(stats.sigma).all()):
            raise ValueError(f"the {which} set's statistics hold NaN or infinite values (non-finite features)")
    diff = np.asarray(a.mu, np.float64) - np.asarray(b.mu, np.float64)
    tr = np.trace(np.asarray(a.sigma, np.float64)) + np.trace(np.asarray(b.sigma, np.float64))
    tr_sqrt, method = trace_sqrt_product(a, b, device)
    value = float(diff @ diff + tr - 2 * tr_sqrt)
    if value < 0:  # a distance: a negative value is round-off (identical sets give -1e-7 at full rank)
        return 0.0, method + f", float64, clamped at 0 from {value:.3g}"
    return value, method + ", float64"


def frechet_distance(a: GaussianStats, b: GaussianStats, device: torch.device | str = "cpu") -> float:
    return frechet_distance_info(a, b, device)[0]
