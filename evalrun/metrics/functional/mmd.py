"""Maximum mean discrepancy with a Gaussian RBF kernel, as CMMD (Jayasumana et al., CVPR 2024)
defines it: k(x, y) = exp(-|x - y|^2 / (2 sigma^2)), sigma = 10, the biased V-statistic
(every term of each mean kept, diagonals included), times scale = 1000. Float64."""

from __future__ import annotations

import numpy as np
import torch


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xx, yy = (x * x).sum(1), (y * y).sum(1)
    return (xx[:, None] + yy[None, :] - 2 * x @ y.T).clamp_min(0)


def rbf_mmd2(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, sigma: float = 10.0, scale: float = 1000.0,
             device: torch.device | str = "cpu") -> float:
    """scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y)) over all pairs; sets may differ in size."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64, device=device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"rbf_mmd2 needs (N, D) and (M, D) embeddings, got {tuple(x.shape)} and {tuple(y.shape)}")
    gamma = 1.0 / (2 * sigma ** 2)
    k_xx = torch.exp(-gamma * _sq_dists(x, x)).mean()
    k_yy = torch.exp(-gamma * _sq_dists(y, y)).mean()
    k_xy = torch.exp(-gamma * _sq_dists(x, y)).mean()
    return float(scale * (k_xx + k_yy - 2 * k_xy))
