"""CLIP-embedding math shared by CLIP score and the editing metrics."""

from __future__ import annotations

import torch


def normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise rows in float64 (zero rows stay zero instead of becoming NaN)."""
    x = x.double()
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(1e-300), torch.zeros_like(x))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity in float64."""
    return (normalize(a) * normalize(b)).sum(dim=-1)


def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    """Per-image CLIP score, ``scale * max(cos, 0)`` (torchmetrics uses 100, Hessel et al. 2.5).

    The clamp is per image: torchmetrics clamps only the mean, which lets a negative image
    pull the average down below what the definition allows.
    """
    return scale * cosine(image_emb, text_emb).clamp_min(0)
