"""FID statistics on disk: the pytorch-fid / clean-fid layout (``mu``, ``sigma``) plus evalrun's provenance.

Never unpickles: ``np.load(allow_pickle=False)``. Files from other tools carry only ``mu`` and
``sigma``: their sample count and feature extractor cannot be checked, and the results say so.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from evalrun.errors import EvalrunError
from evalrun.results import shared_mode


def save_npz(path: str | os.PathLike, stats, meta: dict | None = None) -> None:
    """``mu``, ``sigma``, ``n``, evalrun's provenance as JSON and, for n <= D, the low-rank
    ``factor`` (so the exact trace survives a round trip). Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp.npz")
    os.close(fd)
    extra = {} if stats.factor is None else {"factor": stats.factor}
    try:
        np.savez(tmp, mu=stats.mu, sigma=stats.sigma, n=np.int64(stats.n if stats.n is not None else -1),
                 evalrun_meta=np.array(json.dumps(meta or {}, default=str)), **extra)
        shared_mode(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_npz(path: str | os.PathLike) -> tuple[Any, dict]:
    """(GaussianStats, evalrun's meta or {}) from a statistics file."""
    from evalrun.metrics.functional.fid import GaussianStats

    import zipfile

    if Path(path).is_file() and not zipfile.is_zipfile(path):  # np.load would call it "pickled data"
        raise EvalrunError(f"{path}: not an .npz file (numpy's zip of arrays, with 'mu' and 'sigma')")
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
            n = _count(path, f["n"]) if "n" in f.files else None
            meta = _meta(path, f["evalrun_meta"]) if "evalrun_meta" in f.files else {}
            factor = np.asarray(f["factor"], np.float64) if "factor" in f.files else None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # BadZipFile: a damaged member
        fix = ("; object arrays are pickles, which evalrun never loads: save mu and sigma as float arrays"
               if "allow_pickle" in str(exc) else "")
        raise EvalrunError(f"{path}: not an .npz with 'mu' and 'sigma' ({exc}){fix}") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise EvalrunError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):  # an FID from it would be NaN
        raise EvalrunError(f"{path}: mu or sigma holds NaN or infinite values; recompute the statistics")
    _check_covariance(path, sigma)
    if factor is not None and factor.shape[1:] != mu.shape:
        raise EvalrunError(f"{path}: factor {factor.shape} does not fit mu {mu.shape}")
    return GaussianStats(mu, sigma, n, factor), meta


# A covariance is symmetric with a non-negative diagonal. Files written in float32 (or summed
# in another order) differ from that by round-off only: far below this, relative to max|sigma|.
COVARIANCE_RTOL = 1e-6


def _count(path, value: np.ndarray) -> int | None:
    """``n``: a whole-number scalar (-1, as evalrun writes an unknown count, means unknown)."""
    whole = value.ndim == 0 and (value.dtype.kind in "iu" or (value.dtype.kind == "f" and float(value).is_integer()))
    if not whole:
        raise EvalrunError(f"{path}: 'n' must be the sample count, one integer, got a {value.dtype} array of "
                           f"shape {value.shape}; rewrite the file with n=np.int64(N) (or without n)")
    return int(value) if int(value) >= 0 else None  # evalrun writes -1 when the count is unknown


def _meta(path, value: np.ndarray) -> dict:
    """``evalrun_meta``: one string holding a JSON object."""
    if value.ndim != 0 or value.dtype.kind not in "US":
        raise EvalrunError(f"{path}: 'evalrun_meta' must be one string of JSON, got a {value.dtype} array of "
                           f"shape {value.shape}; rewrite the file without it or with np.array(json.dumps(meta))")
    try:
        meta = json.loads(value.item())
    except ValueError as exc:
        raise EvalrunError(f"{path}: 'evalrun_meta' is not JSON ({exc}); rewrite the file without it") from None
    if not isinstance(meta, dict):
        raise EvalrunError(f"{path}: 'evalrun_meta' must be a JSON object ({{...}}), got {type(meta).__name__}; "
                           f"rewrite the file without it or with a JSON object")
    if not isinstance(meta.get("extractor", {}), (dict, type(None))):  # compared key by key with the run's
        raise EvalrunError(f"{path}: 'evalrun_meta' names its extractor as {type(meta['extractor']).__name__}, "
                           f"not an object; rewrite the file without evalrun_meta or export it again")
    return meta


def _check_covariance(path, sigma: np.ndarray) -> None:
    """Refuse a sigma that cannot be a covariance: asymmetric beyond round-off, or a negative variance.
    (A full PSD check needs an eigendecomposition, seconds at D=2048; the Frechet distance clips
    round-off negative eigenvalues anyway.)"""
    scale = float(np.abs(sigma).max()) if sigma.size else 0.0
    asym = float(np.abs(sigma - sigma.T).max()) if sigma.size else 0.0
    if asym > COVARIANCE_RTOL * scale:
        raise EvalrunError(f"{path}: sigma is not symmetric (max |sigma - sigma.T| = {asym:.3g}, max |sigma| = "
                           f"{scale:.3g}), so it is not a covariance; recompute the statistics")
    diag = np.diagonal(sigma)
    if diag.size and float(diag.min()) < -COVARIANCE_RTOL * scale:
        i = int(diag.argmin())
        raise EvalrunError(f"{path}: sigma has a negative variance (sigma[{i},{i}] = {diag[i]:.3g}), so it is not "
                           f"a covariance; recompute the statistics")
