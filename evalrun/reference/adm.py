"""ADM reference batches as a reference (``reference=adm reference.path=VIRTUAL_imagenet256_labeled.npz``).

The evaluator (guided-diffusion ``evaluations/evaluator.py``) takes FID and sFID statistics from
the file's ``mu``/``sigma`` and ``mu_s``/``sigma_s`` when they are there (``read_statistics``)
and its ``arr_0`` images only for precision and recall; evalrun does the same: Inception pool3
("2048") and sFID ("spatial") statistics come from the file, every other use (precision/recall,
KID, PRDC, other backbones, or a file without statistics) extracts features from ``arr_0``,
cached like any reference images. The published reference batches hold statistics over the
whole dataset and 10,000 images: the statistics' sample count is not in the file.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from evalrun.errors import EvalrunError

log = logging.getLogger(__name__)
FILE_LAYERS = {"2048": ("mu", "sigma"), "spatial": ("mu_s", "sigma_s")}


def fingerprint(spec) -> dict[str, Any]:
    """The file's content (sha256) and image count: the reference cache key's source."""
    from evalrun.hashing import file_sha256
    from evalrun.metrics.functional.adm_batches import image_count, npz_keys

    try:
        n = image_count(spec.path) if "arr_0" in npz_keys(spec.path) else 0
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # object arrays (pickles), damaged members
        raise EvalrunError(f"reference.path={spec.path}: not an ADM reference batch ({exc}); it holds arr_0, uint8 "
                           f"images (N, H, W, 3), as the ADM evaluator's VIRTUAL_*.npz files do") from None
    return {"kind": "adm", "n": n, "content_sha256": file_sha256(spec.path)}


def describe_file(path) -> dict[str, Any]:
    """What an ADM batch holds, for results: members, image count and size, sha256."""
    from evalrun.hashing import file_sha256
    from evalrun.metrics.functional.adm_batches import image_shape, npz_keys

    keys = npz_keys(path)
    out: dict[str, Any] = {"reference_file": Path(path).name, "reference_sha256": file_sha256(path),
                           "reference_members": sorted(keys), "reference_images": None, "reference_image_size": None}
    if "arr_0" in keys:
        shape = image_shape(path)
        out["reference_images"], out["reference_image_size"] = shape[0], f"{shape[1]}x{shape[2]}"
    return out


def file_stats(spec, extractor, layer: str):
    """(GaussianStats, info) from the file's statistics for Inception pool3/spatial, or None when the
    file has none or another backbone/layer is asked for (then images are used)."""
    from evalrun.metrics.functional.adm_batches import read_stats
    from evalrun.metrics.functional.fid import GaussianStats

    if extractor.name != "inception" or layer not in FILE_LAYERS:
        return None
    try:
        stats = read_stats(spec.path)
    except ValueError as exc:
        raise EvalrunError(f"reference.path={spec.path}: {exc}") from None
    if stats is None:
        return None
    mu_key, sigma_key = FILE_LAYERS[layer]
    mu, sigma = getattr(stats, mu_key), getattr(stats, sigma_key)
    info: dict[str, Any] = {"reference": spec.describe(), "reference_n": None,
                            "reference_stats_source": f"file ({mu_key}, {sigma_key}), as the ADM evaluator reads them",
                            **describe_file(spec.path)}
    if not extractor.weights_identity().get("official"):
        info["reference_warning"] = ("the ADM file's statistics come from the official Inception graph, but this run's "
                                     "Inception weights are not the official ones: distances to them mean nothing")
        log.warning(info["reference_warning"])
    return GaussianStats(np.asarray(mu, np.float64), np.asarray(sigma, np.float64), None), info

