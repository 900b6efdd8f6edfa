"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) per split, in float64.

The score depends on sample order and the split rule (guided-diffusion #165), so both are
fixed here and recorded: a ``RandomState(seed)`` permutation and splits
``[i*N//k, (i+1)*N//k)``, as torch-fidelity does (torchmetrics uses ``torch.chunk`` and the
global RNG, and ddof=1 for the std). With the same permutation both agree with this.
"""

from __future__ import annotations

import numpy as np
import torch


def split_permutation(n: int, seed: int) -> np.ndarray:
    """The order IS splits ``n`` images in, and the order an ADM sample batch is written in (so the evaluator's
    consecutive splits of the batch are these): a run samples class by class, the published batches hold a
    random class per image."""
    return np.random.RandomState(seed).permutation(n)


def inception_score_splits(logits: np.ndarray | torch.Tensor, splits: int,
                           permutation: np.ndarray | None = None) -> np.ndarray:
    """Per-split scores from (N, classes) logits (unbiased: torch-fidelity's ``logits_unbiased``)."""
    x = torch.as_tensor(np.asarray(logits)).double()
    n = len(x)
    if not 1 <= splits <= n:
        raise ValueError(f"inception score splits must be in [1, N={n}], got {splits}")
    if permutation is not None:
        x = x[torch.as_tensor(np.asarray(permutation))]
    log_p = x.log_softmax(dim=1)
    return np.asarray([_split_score(log_p[i * n // splits:(i + 1) * n // splits]) for i in range(splits)])


def _split_score(log_p: torch.Tensor) -> float:
    """exp(mean KL(p(y|x) || p(y))) of one split, from its log p(y|x). log p(y) by logsumexp: a class whose
    probability underflows to 0 in every image (confident logits) gives 0 * log 0 = 0, as in the limit,
    where p * (log p - log mean(p)) gave 0 * inf = NaN. Elsewhere equal to torch-fidelity's form."""
    import math

    log_q = torch.logsumexp(log_p, dim=0, keepdim=True) - math.log(len(log_p))
    return float((log_p.exp() * (log_p - log_q)).sum(dim=1).mean().exp())


def inception_score_chunks(logits: np.ndarray | torch.Tensor, split_size: int,
                           permutation: np.ndarray | None = None) -> np.ndarray:
    """Per-split scores with the ADM evaluator's split rule (guided-diffusion ``evaluator.py``,
    ``compute_inception_score(activations, split_size=5000)``): consecutive splits of ``split_size``
    images in sample order, the last one shorter when N is not a multiple; the evaluator reports
    their mean. Same per-split formula as ``inception_score_splits`` (float64 here, float32 there)."""
    x = torch.as_tensor(np.asarray(logits)).double()
    n = len(x)
    if split_size < 1 or n < 1:
        raise ValueError(f"need split_size >= 1 and at least one image, got {split_size} and N={n}")
    if permutation is not None:
        x = x[torch.as_tensor(np.asarray(permutation))]
    log_p = x.log_softmax(dim=1)
    return np.asarray([_split_score(log_p[lo:lo + split_size]) for lo in range(0, n, split_size)])


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10, seed: int | None = 0) -> tuple[float, float]:
    """(mean, std with ddof=0) over splits; ``seed=None`` keeps the given order."""
    perm = None if seed is None else split_permutation(len(logits), seed)
    scores = inception_score_splits(logits, splits, perm)
    return float(scores.mean()), float(scores.std())
