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
            n = int(f["n"]) if "n" in f.files and int(f["n"]) >= 0 else None
            meta = json.loads(str(f["evalrun_meta"])) if "evalrun_meta" in f.files else {}
            factor = np.asarray(f["factor"], np.float64) if "factor" in f.files else None
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise EvalrunError(f"{path}: not an .npz with 'mu' and 'sigma' ({exc})") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise EvalrunError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):  # an FID from it would be NaN
        raise EvalrunError(f"{path}: mu or sigma holds NaN or infinite values; recompute the statistics")
    if factor is not None and factor.shape[1:] != mu.shape:
        raise EvalrunError(f"{path}: factor {factor.shape} does not fit mu {mu.shape}")
    return GaussianStats(mu, sigma, n, factor), meta
