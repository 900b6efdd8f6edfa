"""Editing metrics from CLIP embeddings: directional similarity and image similarity.

Pure float64 functions over embedding rows (one row per edit). Embeddings are L2-normalised
here first, as the diffusers guide does, so callers pass raw projected CLIP embeddings.
"""

from __future__ import annotations

import torch

from evalrun.metrics.functional.clip import cosine, normalize

# A direction (difference of two unit vectors) shorter than this counts as zero. Two genuinely
# different images or captions differ by 1e-3 or more; re-encoding the same pixels in another
# batch layout moves a float32 CLIP embedding by about 1e-7, which must not become a direction.
ZERO_DIRECTION_TOL = 1e-6


def directions(input_emb: torch.Tensor, output_emb: torch.Tensor) -> torch.Tensor:
    """``normalize(output) - normalize(input)``, row-wise, in float64."""
    return normalize(output_emb) - normalize(input_emb)


def zero_directions(direction: torch.Tensor, tol: float = ZERO_DIRECTION_TOL) -> torch.Tensor:
    """Rows whose direction has (numerically) zero length."""
    return direction.norm(dim=-1) <= tol


def directional_similarity(input_image: torch.Tensor, edited_image: torch.Tensor, input_text: torch.Tensor,
                           output_text: torch.Tensor, tol: float = ZERO_DIRECTION_TOL
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CLIP directional similarity (Gal et al. 2021, as in the diffusers guide), per edit:

        cos(norm(E_img(edited)) - norm(E_img(input)), norm(E_txt(output)) - norm(E_txt(input)))

    Returns ``(similarity, zero_image, zero_text)``. Where either direction is zero (the
    edited image equals its input, or the two captions are the same) the cosine has no
    direction to measure, and the similarity is defined as 0.0, "no evidence the edit
    followed the caption change"; this is also what the guide's ``F.cosine_similarity``
    returns for a zero vector (its eps clamp), but here it is explicit, exact and flagged
    through the two boolean masks so callers can count and warn.
    """
    d_img = directions(input_image, edited_image)
    d_txt = directions(input_text, output_text)
    zero_img, zero_txt = zero_directions(d_img, tol), zero_directions(d_txt, tol)
    sim = cosine(d_img, d_txt).clamp(-1.0, 1.0)  # round-off can land a hair outside [-1, 1]
    sim = torch.where(zero_img | zero_txt, torch.zeros_like(sim), sim)
    return sim, zero_img, zero_txt


def image_similarity(input_image: torch.Tensor, edited_image: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of input and edited image embeddings: 1.0 when nothing changed
    (clamped: float64 round-off gives 1.0000000000000002 for identical embeddings)."""
    return cosine(input_image, edited_image).clamp(-1.0, 1.0)
