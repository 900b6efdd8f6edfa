"""Maximum mean discrepancy with a Gaussian RBF kernel, as CMMD (Jayasumana et al., CVPR 2024)
defines it: k(x, y) = exp(-|x - y|^2 / (2 sigma^2)), sigma = 10, the biased V-statistic
(every term of each mean kept, diagonals included), times scale = 1000. Float64."""

from __future__ import annotations

import numpy as np
import torch


ROWS = 1024  # kernel rows per block: memory ROWS x M x 8 bytes (a full N x N matrix was 21 GiB at N = 30k)


def _kernel_mean(a: torch.Tensor, b: torch.Tensor, gamma: float, rows: int = ROWS) -> torch.Tensor:
    """mean over all pairs of exp(-gamma |a_i - b_j|^2), summed block by block of ``rows`` rows of a."""
    bb = (b * b).sum(1)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for start in range(0, len(a), rows):
        block = a[start:start + rows]
        dists = ((block * block).sum(1)[:, None] + bb[None, :] - 2 * block @ b.T).clamp_min(0)
        total += torch.exp(-gamma * dists).sum()
    return total / (len(a) * len(b))


def rbf_mmd2(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, sigma: float = 10.0, scale: float = 1000.0,
             device: torch.device | str = "cpu", rows: int = ROWS) -> float:
    """scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y)) over all pairs; sets may differ in size.
    Blocked: memory grows with N, not N^2."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"rbf_mmd2 needs (N, D) and (M, D) embeddings, got {tuple(x.shape)} and {tuple(y.shape)}")
    gamma = 1.0 / (2 * sigma ** 2)
    k_xx, k_yy, k_xy = (_kernel_mean(a, b, gamma, rows) for a, b in ((x, x), (y, y), (x, y)))
    return float(scale * (k_xx + k_yy - 2 * k_xy))
