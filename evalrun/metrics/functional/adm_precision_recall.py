"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019) exactly as the ADM
evaluation suite computes them (openai/guided-diffusion ``evaluations/evaluator.py``:
``Evaluator.compute_prec_recall``, ``ManifoldEstimator``, ``DistanceBlock``).

What that code does, step by step (all of it reproduced here):

- Distances are SQUARED Euclidean distances, ``max(|u|^2 - 2 u.v + |v|^2, 0)``
  (``_batch_pairwise_distances``), computed by TensorFlow in float16 (both feature batches
  cast to float16), and recomputed in float32 only for a (row batch, column batch) block in
  which some float16 value is not finite (``tf.cond(reduce_all(is_finite(...)))``). The
  result is cast to float32. Blocks are 10000 x 10000 (``row_batch_size``,
  ``col_batch_size``).
- ``manifold_radii``: for each feature, the distances to every feature of the same set,
  its own included (so the smallest is normally its self-distance), partitioned with
  ``kth = [0, 1, ..., k]``; the radius is element ``k`` (``nhood_sizes=(3,)``): the (k+1)-th
  smallest squared distance, i.e. the squared distance to the k-th nearest other point.
  ``clamp_to_percentile=None``: no radius is pruned.
- ``evaluate_pr(ref, ref_radii, sample, sample_radii)`` with the distances of ref rows
  against sample columns:
  precision = fraction of SAMPLES with some ref i such that d(ref_i, sample) <= radius(ref_i)
  (``_batch_2_in``, reduced over ref rows, returned first), recall = fraction of REFS with
  some sample j such that d(ref, sample_j) <= radius(sample_j) (``_batch_1_in``). The
  reference manifold decides precision, the sample manifold recall; comparisons are ``<=``
  on float32 values (the prdc package uses ``<``).
- ``eps=1e-5`` only enters the realism score (``evaluate``), not precision or recall.

``arithmetic`` picks how the distances are computed:

- ``"float16"`` (default) emulates the TensorFlow graph: inputs rounded to float16, each
  square rounded to float16, row sums and the matrix product accumulated in float32 and
  rounded to float16 (cuBLAS's default for half inputs), then ``(|u|^2 - 2 u.v) + |v|^2``
  and the max with 0 in float16 arithmetic, the float32 fallback per block as above. Where
  TensorFlow's own kernel rounds or orders its sums differently (it differs between GPU and
  CPU, and between releases: the CPU kernel accumulates the product in float16), a distance
  can move by one float16 step (about 1e-3 relative), which can flip a membership when a
  distance ties a radius. Measured against the evaluator itself run with TensorFlow 2.21 on
  CPU (4 synthetic Inception-like sets, 2000 vs 2000, D=2048, squared norms about 3600):
  the float16 emulation was within 0-2 samples of 2000 (precision and recall within 1e-3),
  float32 and float64 within 0-5 (2.5e-3): the float16 rounding itself moves the metric
  by that much. The evaluator's loops, blocks, partition and comparisons, run with a
  distance block in these arithmetics, give exactly these functions' numbers.
- ``"float32"``: the evaluator's fallback formula for every block.
- ``"float64"``: the same formula in float64: the metric without float16 round-off.

Memory: at most ``block`` rows of distances at a time (default 2**25 values per block);
the float16/float32 decision is still made per 10000 x 10000 evaluator block, as the
evaluator makes it.
"""

from __future__ import annotations

import numpy as np
import torch

ADM_K = 3
ADM_BATCH = 10000            # row_batch_size = col_batch_size in ManifoldEstimator
BLOCK_VALUES = 1 << 25
FLOAT16_SAFE = 60000.0       # below float16's max 65504 with margin for rounding of the bound's terms
ARITHMETIC = ("float16", "float32", "float64")


def _check_arithmetic(arithmetic: str) -> None:
    if arithmetic not in ARITHMETIC:
        raise ValueError(f"arithmetic must be one of {ARITHMETIC}, got {arithmetic!r}")


def _features(x, name: str, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2 or len(t) == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {tuple(t.shape)}")
    # The evaluator feeds float32 placeholders: features are float32 before any cast to float16.
    t = t.to(device=device, dtype=torch.float32)
    if not torch.isfinite(t).all():  # a NaN row is never within a radius: it would count as off the manifold
        raise ValueError(f"{name} has NaN or infinite values")
    return t


def _half(x: torch.Tensor) -> torch.Tensor:
    """Round float32 values to float16 (round to nearest even, overflow to inf), kept as float32."""
    return x.half().float()


def _sq_norms16(x: torch.Tensor) -> torch.Tensor:
    x16 = _half(x)
    return _half((_half(x16 * x16)).sum(1))


def _distances16(u: torch.Tensor, v: torch.Tensor, nu16: torch.Tensor, nv16: torch.Tensor) -> torch.Tensor:
    """float16 emulation of ``maximum(norm_u - 2 * matmul(U, V^T) + norm_v, 0)``, float32 result."""
    mm = _half(_half(u) @ _half(v).T)
    t = _half(nu16[:, None] - _half(2 * mm))
    return _half(t + nv16[None, :]).clamp_min(0)


def _distances_exact(u: torch.Tensor, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    u, v = u.to(dtype), v.to(dtype)
    nu, nv = (u * u).sum(1), (v * v).sum(1)
    return ((nu[:, None] - 2 * (u @ v.T)) + nv[None, :]).clamp_min(0)


class _Distances:
    """Squared distances of rows of ``a`` against rows of ``b`` in the evaluator's arithmetic,
    with its per-block float16/float32 choice; ``a`` plays TensorFlow's U, ``b`` its V."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, arithmetic: str, batch: int, block: int | None):
        self.a, self.b, self.arithmetic, self.batch = a, b, arithmetic, batch
        self.rows = max(1, min(batch, block if block is not None else BLOCK_VALUES // max(1, len(b))))
        if arithmetic == "float16":
            self.na, self.nb = _sq_norms16(a), _sq_norms16(b)
        self._use16: dict[tuple[int, int], bool] = {}

    def _block_is_float16(self, r0: int, c0: int) -> bool:
        """Whether the evaluator's (r0, c0) block stays finite in float16 (else: float32)."""
        key = (r0, c0)
        if key not in self._use16:
            na, nb = self.na[r0:r0 + self.batch], self.nb[c0:c0 + self.batch]
            if not (torch.isfinite(na).all() and torch.isfinite(nb).all()):
                ok = False
            elif float((na.max().sqrt() + nb.max().sqrt()) ** 2) < FLOAT16_SAFE:
                ok = True   # |u|^2 + 2|u.v| + |v|^2 bounds every intermediate: no overflow possible
            else:           # rare: compute the block once just to see whether it overflows
                ok = True
                a, b = self.a[r0:r0 + self.batch], self.b[c0:c0 + self.batch]
                for lo in range(0, len(a), self.rows):
                    d = _distances16(a[lo:lo + self.rows], b, na[lo:lo + self.rows], nb)
                    if not torch.isfinite(d).all():
                        ok = False
                        break
            self._use16[key] = ok
        return self._use16[key]

    def rows_against_all(self, lo: int, hi: int):
        """Yield (c0, distances of a[lo:hi] against b[c0:c0 + batch]) for every column block;
        [lo, hi) must lie inside one evaluator row block."""
        r0 = (lo // self.batch) * self.batch
        u = self.a[lo:hi]
        for c0 in range(0, len(self.b), self.batch):
            v = self.b[c0:c0 + self.batch]
            if self.arithmetic == "float64":
                d = _distances_exact(u, v, torch.float64)
            elif self.arithmetic == "float16" and self._block_is_float16(r0, c0):
                d = _distances16(u, v, self.na[lo:hi], self.nb[c0:c0 + self.batch])
            else:
                d = _distances_exact(u, v, torch.float32)
            yield c0, d

    def row_blocks(self):
        """(lo, hi) row ranges of at most ``rows`` rows that never straddle an evaluator block."""
        for r0 in range(0, len(self.a), self.batch):
            r1 = min(r0 + self.batch, len(self.a))
            for lo in range(r0, r1, self.rows):
                yield lo, min(lo + self.rows, r1)


def adm_manifold_radii(features, k: int = ADM_K, arithmetic: str = "float16", batch: int = ADM_BATCH,
                       block: int | None = None, device: torch.device | str = "cpu") -> np.ndarray:
    """``ManifoldEstimator.manifold_radii``: the (k+1)-th smallest squared distance from each
    feature to the features of its own set (itself included), float32 (float64 for
    ``arithmetic="float64"``)."""
    _check_arithmetic(arithmetic)
    x = _features(features, "features", device)
    if not 0 <= k < len(x):
        raise ValueError(f"k must be in [0, N - 1 = {len(x) - 1}], got {k}")
    dist = _Distances(x, x, arithmetic, batch, block)
    out = []
    for lo, hi in dist.row_blocks():
        row = torch.cat([d for _, d in dist.rows_against_all(lo, hi)], dim=1)
        out.append(row.kthvalue(k + 1, dim=1).values)
    return torch.cat(out).cpu().numpy()


def adm_evaluate_pr(ref_features, ref_radii, sample_features, sample_radii, arithmetic: str = "float16",
                    batch: int = ADM_BATCH, block: int | None = None,
                    device: torch.device | str = "cpu") -> tuple[float, float]:
    """``ManifoldEstimator.evaluate_pr`` for one neighbourhood size: (precision, recall)."""
    _check_arithmetic(arithmetic)
    ref = _features(ref_features, "ref_features", device)
    sample = _features(sample_features, "sample_features", device)
    if ref.shape[1] != sample.shape[1]:
        raise ValueError(f"feature dimensions differ: ref {ref.shape[1]} vs sample {sample.shape[1]}")
    dtype = torch.float64 if arithmetic == "float64" else torch.float32
    r_ref = torch.as_tensor(np.asarray(ref_radii).reshape(-1), device=ref.device).to(dtype)
    r_sample = torch.as_tensor(np.asarray(sample_radii).reshape(-1), device=ref.device).to(dtype)
    if len(r_ref) != len(ref) or len(r_sample) != len(sample):
        raise ValueError("radii must have one value per feature row")
    ref_in = torch.zeros(len(ref), dtype=torch.bool, device=ref.device)          # recall
    sample_in = torch.zeros(len(sample), dtype=torch.bool, device=ref.device)    # precision
    dist = _Distances(ref, sample, arithmetic, batch, block)
    for lo, hi in dist.row_blocks():
        for c0, d in dist.rows_against_all(lo, hi):
            c1 = c0 + d.shape[1]
            ref_in[lo:hi] |= (d <= r_sample[None, c0:c1]).any(1)
            sample_in[c0:c1] |= (d <= r_ref[lo:hi, None]).any(0)
    return float(sample_in.double().mean()), float(ref_in.double().mean())


def adm_precision_recall(ref_features, sample_features, k: int = ADM_K, arithmetic: str = "float16",
                         batch: int = ADM_BATCH, block: int | None = None,
                         device: torch.device | str = "cpu") -> tuple[float, float]:
    """``Evaluator.compute_prec_recall(ref_acts, sample_acts)``: (precision, recall) of the
    samples against the reference batch (pool_3 features in the evaluator)."""
    r_ref = adm_manifold_radii(ref_features, k, arithmetic, batch, block, device)
    r_sample = adm_manifold_radii(sample_features, k, arithmetic, batch, block, device)
    return adm_evaluate_pr(ref_features, r_ref, sample_features, r_sample, arithmetic, batch, block, device)
