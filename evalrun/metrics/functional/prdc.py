"""Precision, recall, density and coverage (Naeem et al., ICML 2020, "Reliable Fidelity and
Diversity Metrics for Generative Models"), as the official ``prdc`` package computes them
(clovaai/generative-evaluation-prdc, ``prdc/prdc.py``), in float64 and in row blocks.

With ``r_i`` the distance from real sample X_i to its k-th nearest other real sample,
``s_j`` the same for generated sample Y_j among generated samples, and ``B(c, r)`` the open
ball (the package compares with a strict ``<``):

    precision = 1/M sum_j [ exists i: Y_j in B(X_i, r_i) ]       fidelity: fakes on the real manifold
    recall    = 1/N sum_i [ exists j: X_i in B(Y_j, s_j) ]       diversity: reals on the fake manifold
    density   = 1/(kM) sum_j sum_i [ Y_j in B(X_i, r_i) ]         how many real balls hold each fake
    coverage  = 1/N sum_i [ min_j |X_i - Y_j| < r_i ]             reals whose own ball holds a fake

Roles are not symmetric: precision and density use the REAL radii, recall the generated
ones, coverage the real ones again. torch-fidelity swapped real and generated in its
precision/recall once (#58; 0.4.0 fixed it); a generated set that is a small cluster of real
points must score precision 1 and low recall, which the tests check.

Distances: the k-th neighbour radius is the (k+1)-th smallest distance in the row with the
self-distance (exactly 0) included, as the package's ``get_kth_value(d, k + 1)``: a duplicate
of a point is one of its neighbours at distance 0. Distances are Euclidean, from
``|x|^2 + |y|^2 - 2 x.y`` in float64 (absolute error about 1e-16 (|x|^2 + |y|^2), so about
1e-13 on squared Inception distances of order 100-1000; float32 would put round-off of about
1e-4 on them, enough to flip ball memberships at the boundary), with entries that cancel
to below 1e-8 of the squared norms recomputed directly as ``sum((x - y)^2)``, so identical
rows are exactly 0 apart (the package's sklearn distances give 0 only on the diagonal of a
set against itself).

Memory: the N x M matrix is never held. The real-real and fake-fake k-NN radii take
``block`` rows at a time; one pass over blocks of real rows against all fakes gives recall
and coverage per real row and accumulates, per fake column, the count of real balls that
hold it (precision and density). Peak memory is ``block * max(N, M)`` float64 values
(``block`` defaults to fit 2**25 values, 256 MiB: 671 rows at 50k). Cost for N = M = 50k,
D = 2048: three N x N x D float64 matrix products, 3e13 flops: 5k x 5k took 7 s on this
2-core CPU, so 50k x 50k takes about 12 minutes there; on a GPU pass ``device="cuda"``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

BLOCK_VALUES = 1 << 25   # float64 values per distance block (256 MiB)
REFINE_RELATIVE = 1e-8   # squared distances below this fraction of |x|^2 + |y|^2 are recomputed directly


class PRDC(NamedTuple):
    precision: float
    recall: float
    density: float
    coverage: float


def _as_features(x, name: str, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2 or len(t) == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {tuple(t.shape)}")
    t = t.to(device=device, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return t


def block_rows(n_cols: int, block: int | None = None) -> int:
    """Rows per block so that a block of distances holds at most ``BLOCK_VALUES`` values."""
    if block is not None:
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        return block
    return max(1, BLOCK_VALUES // max(1, n_cols))


def pairwise_distances(x: torch.Tensor, y: torch.Tensor, x_sq: torch.Tensor | None = None,
                       y_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances between rows of ``x`` and ``y`` (float64 tensors), exact 0 for equal rows."""
    x_sq = (x * x).sum(1) if x_sq is None else x_sq
    y_sq = (y * y).sum(1) if y_sq is None else y_sq
    scale = x_sq[:, None] + y_sq[None, :]
    sq = (scale - 2 * (x @ y.T)).clamp_min_(0)
    close = sq <= REFINE_RELATIVE * scale
    if close.any():
        i, j = close.nonzero(as_tuple=True)
        step = max(1, BLOCK_VALUES // max(1, x.shape[1]))   # pairs per chunk: bounded memory even if all rows are equal
        for s in range(0, len(i), step):
            ii, jj = i[s:s + step], j[s:s + step]
            sq[ii, jj] = ((x[ii] - y[jj]) ** 2).sum(1)
    return sq.sqrt_()


def knn_radii(features, k: int = 5, block: int | None = None, device: torch.device | str = "cpu") -> np.ndarray:
    """Distance from each row to its k-th nearest other row (float64, length N)."""
    x = _as_features(features, "features", device)
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"nearest_k must be in [1, N - 1 = {n - 1}], got {k}")
    sq = (x * x).sum(1)
    rows = block_rows(n, block)
    out = torch.empty(n, dtype=torch.float64, device=x.device)
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        d = pairwise_distances(x[lo:hi], x, sq[lo:hi], sq)
        d[torch.arange(hi - lo, device=x.device), torch.arange(lo, hi, device=x.device)] = 0.0
        out[lo:hi] = d.kthvalue(k + 1, dim=1).values
    return out.cpu().numpy()


def prdc(real_features, fake_features, nearest_k: int = 5, block: int | None = None,
         device: torch.device | str = "cpu") -> PRDC:
    """Precision, recall, density, coverage of ``fake_features`` (M, D) against ``real_features``
    (N, D), with k = ``nearest_k`` (the paper's and the package's default 5)."""
    real = _as_features(real_features, "real_features", device)
    fake = _as_features(fake_features, "fake_features", device)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape[1]} vs fake {fake.shape[1]}")
    n, m = len(real), len(fake)
    if not 1 <= nearest_k < min(n, m):
        raise ValueError(f"nearest_k must be in [1, min(N, M) - 1 = {min(n, m) - 1}], got {nearest_k}")
    r_real = torch.as_tensor(knn_radii(real, nearest_k, block, device), device=real.device)
    r_fake = torch.as_tensor(knn_radii(fake, nearest_k, block, device), device=real.device)

    real_sq, fake_sq = (real * real).sum(1), (fake * fake).sum(1)
    in_real_balls = torch.zeros(m, dtype=torch.int64, device=real.device)  # per fake: real balls holding it
    recalled = torch.zeros(n, dtype=torch.bool, device=real.device)
    covered = torch.zeros(n, dtype=torch.bool, device=real.device)
    rows = block_rows(m, block)
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        d = pairwise_distances(real[lo:hi], fake, real_sq[lo:hi], fake_sq)   # (rows, M)
        inside = d < r_real[lo:hi, None]
        in_real_balls += inside.sum(0)
        recalled[lo:hi] = (d < r_fake[None, :]).any(1)
        covered[lo:hi] = d.min(1).values < r_real[lo:hi]
    return PRDC(precision=float((in_real_balls > 0).double().mean()),
                recall=float(recalled.double().mean()),
                density=float(in_real_balls.double().sum() / (nearest_k * m)),
                coverage=float(covered.double().mean()))
