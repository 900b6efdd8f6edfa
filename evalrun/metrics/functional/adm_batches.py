"""ADM reference batches (openai/guided-diffusion ``evaluations/evaluator.py``): read them as the
evaluator reads them, write generated sets it accepts, and build its sFID features from
torch-fidelity's Inception. Pure numpy I/O; ``allow_pickle`` is never set.

Layout (an ``.npz``: a zip of ``.npy`` members, as ``np.savez`` writes it):

- ``arr_0``: uint8 images, N x H x W x 3 (NHWC, RGB, [0, 255]). The evaluator streams it in
  batches of 64 straight from the zip member (``open_npz_array``: ``read_magic``, header 1.0
  or 2.0, C order; otherwise a whole-file ``np.load``), feeds ``batch.astype(float32)`` to the
  Inception graph, which resizes to 299 x 299 itself. Sample batches from guided-diffusion's
  sampling scripts also carry ``arr_1`` (the class labels); the evaluator ignores it.
- ``mu``, ``sigma``, ``mu_s``, ``sigma_s`` (optional, all four or none): when ``mu`` is
  present, ``read_statistics`` takes FID and sFID statistics from the file and does NOT
  recompute them from ``arr_0`` (precision and recall still use ``arr_0``). The evaluator
  computes them as ``np.mean(acts, axis=0)`` (float32 activations: a float32 mean) and
  ``np.cov(acts, rowvar=False)`` (float64), which ``adm_statistics`` reproduces. Writing
  statistics into a sample batch therefore replaces the evaluator's own Inception for FID
  and sFID: write them only when they come from the same TensorFlow graph.

sFID features: ``FID_SPATIAL_NAME = "mixed_6/conv:0"``, then ``spatial[..., :7]`` and
``reshape([N, -1])``: the first 7 channels of a 17 x 17 x 192 NHWC map, flattened in
(row, column, channel) order, 2023 values per image. Which PyTorch layer that is:

- The 2015 graph (``classify_image_graph_def.pb``) names its Inception blocks ``mixed``,
  ``mixed_1``, ..., ``mixed_10`` in order. torch-fidelity's own converter
  (``utils/util_convert_inception_weights.py``, the script that made the weights
  ``FeatureExtractorInceptionV3`` loads) maps them one to one onto torchvision's names:
  ``mixed``, ``mixed_1``, ``mixed_2`` -> ``Mixed_5b/5c/5d``; ``mixed_3`` -> ``Mixed_6a``;
  ``mixed_4`` .. ``mixed_7`` -> ``Mixed_6b`` .. ``Mixed_6e``; ``mixed_8`` -> ``Mixed_7a``;
  ``mixed_9``, ``mixed_10`` -> ``Mixed_7b``, ``Mixed_7c``. In particular
  ``mixed_6/conv/conv2d_params`` -> ``Mixed_6d.branch1x1.conv`` and
  ``mixed_6/conv/batchnorm`` -> ``Mixed_6d.branch1x1.bn``. So ``mixed_6`` is ``Mixed_6d``,
  not ``Mixed_6e`` (a port that hooks ``Mixed_6e`` is off by one: TF counts from 0
  after ``mixed``, torchvision's letters start at 5b).
- ``mixed_6/conv`` is the scope of that block's 1x1 branch (192 output channels, 17 x 17 at
  299 x 299 input). Inside the scope the graph holds ``conv2d_params``, ``Conv2D``,
  ``batchnorm`` (BatchNormWithGlobalNormalization with beta, gamma, moving mean and
  variance), ``CheckNumerics`` and ``control_dependency``; the op named by the bare scope
  comes after all of them (the graph's op list, e.g. for the first layer: ``conv/conv2d_params,
  conv/Conv2D, conv/batchnorm/..., conv/batchnorm, conv/CheckNumerics,
  conv/control_dependency, conv``). It is the layer's output after batch norm, i.e. its
  activation, which the block's concat ``mixed_6/join`` consumes; torch-fidelity's port,
  whose ``BasicConv2d`` returns ``relu(bn(conv(x)))`` (eps 0.001) for every such layer,
  reproduces the graph's ``pool_3`` features, which it could not if the tensors concatenated
  were taken before the ReLU. Hence ``mixed_6/conv:0`` = the output of torch-fidelity's
  ``Mixed_6d.branch1x1`` module (conv + BN + ReLU), NCHW (N, 192, 17, 17), channel order as
  TF's (the converter only permutes HWIO -> OIHW). Caveat: the op type of the bare node
  (``Relu``) is inferred from this layout and the port's agreement, not read from the .pb,
  which was not available offline.

Capture it with a forward hook: ``extractor.Mixed_6d.branch1x1.register_forward_hook(lambda
m, i, o: store.append(o))``, then ``adm_spatial_features(o)``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

STAT_KEYS = ("mu", "sigma", "mu_s", "sigma_s")
SFID_CHANNELS = 7


class AdmStats(NamedTuple):
    """FID (pool_3) and sFID (mixed_6/conv, 7 channels) statistics as the evaluator stores them."""

    mu: np.ndarray
    sigma: np.ndarray
    mu_s: np.ndarray
    sigma_s: np.ndarray


@contextmanager
def _member(path, name: str):
    with open(path, "rb") as f, zipfile.ZipFile(f, "r") as zf:
        if f"{name}.npy" not in zf.namelist():
            raise ValueError(f"{path}: no {name!r} in the npz (members: {sorted(zf.namelist())})")
        with zf.open(f"{name}.npy", "r") as member:
            yield member


def _header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if dtype.hasobject:
        raise ValueError("object arrays need pickle, which is never allowed here")
    return shape, fortran, dtype


def npz_keys(path) -> list[str]:
    """Member names (without ``.npy``) of an npz, without loading any array."""
    with open(path, "rb") as f, zipfile.ZipFile(f, "r") as zf:
        return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]


def image_count(path) -> int:
    """Number of images in ``arr_0`` (header only)."""
    with _member(path, "arr_0") as member:
        return int(_header(member)[0][0])


def image_shape(path) -> tuple[int, ...]:
    """Shape of ``arr_0`` (N, H, W, 3), from its header only."""
    with _member(path, "arr_0") as member:
        return tuple(int(v) for v in _header(member)[0])


def _check_images(shape, dtype, where: str) -> None:
    if len(shape) != 4 or shape[-1] != 3 or np.dtype(dtype) != np.uint8:
        raise ValueError(f"{where}: ADM batches hold uint8 NHWC RGB images (N, H, W, 3), "
                         f"got dtype {np.dtype(dtype)} shape {tuple(shape)}")


def iter_images(path, batch_size: int = 64) -> Iterator[np.ndarray]:
    """``arr_0`` in batches of ``batch_size`` (the evaluator's 64), streamed from the zip as
    ``open_npz_array`` does, without loading the whole array."""
    with _member(path, "arr_0") as member:
        shape, fortran, dtype = _header(member)
        _check_images(shape, dtype, str(path))
        if fortran:   # the evaluator falls back to a whole-array load here too
            images = np.load(path, allow_pickle=False)["arr_0"]
            for lo in range(0, len(images), batch_size):
                yield images[lo:lo + batch_size]
            return
        row = int(np.prod(shape[1:])) * dtype.itemsize
        for lo in range(0, shape[0], batch_size):
            count = min(batch_size, shape[0] - lo)
            data = member.read(count * row)
            if len(data) != count * row:
                raise ValueError(f"{path}: arr_0 ends early: expected {count * row} bytes, got {len(data)}")
            yield np.frombuffer(data, dtype=dtype).reshape((count, *shape[1:]))


def read_images(path) -> np.ndarray:
    """All of ``arr_0`` (uint8, N x H x W x 3) in memory."""
    batches = list(iter_images(path, 1024))
    return np.concatenate(batches) if batches else np.zeros((0, 0, 0, 3), np.uint8)


def read_labels(path) -> np.ndarray | None:
    """``arr_1`` (class labels of a sample batch) if present."""
    if "arr_1" not in npz_keys(path):
        return None
    with np.load(path, allow_pickle=False) as z:
        return z["arr_1"]


def read_stats(path) -> AdmStats | None:
    """The stored ``mu``/``sigma``/``mu_s``/``sigma_s`` as saved (dtypes kept), or None when the
    file has no ``mu`` (the evaluator then computes them from ``arr_0``)."""
    if not zipfile.is_zipfile(path):  # np.load would call any other file "pickled data" and suggest allow_pickle
        raise ValueError(f"{path}: not an .npz file (numpy's zip of arrays: an ADM batch holds arr_0 and mu, sigma, "
                         f"mu_s, sigma_s)")
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        if "mu" not in keys:
            return None
        missing = [k for k in STAT_KEYS if k not in keys]
        if missing:   # the evaluator would raise a KeyError on these
            raise ValueError(f"{path}: has 'mu' but lacks {missing}; the evaluator needs all of {STAT_KEYS}")
        return AdmStats(*(z[k] for k in STAT_KEYS))


def adm_statistics(pool_features, spatial_features) -> AdmStats:
    """Statistics exactly as ``Evaluator.compute_statistics``: ``np.mean(axis=0)`` in the
    activations' dtype and ``np.cov(rowvar=False)``."""
    pool, spatial = np.asarray(pool_features), np.asarray(spatial_features)
    for name, a in (("pool_features", pool), ("spatial_features", spatial)):
        if a.ndim != 2 or len(a) < 2:
            raise ValueError(f"{name} must be (N >= 2, D), got shape {a.shape}")
    return AdmStats(np.mean(pool, axis=0), np.cov(pool, rowvar=False), np.mean(spatial, axis=0),
                    np.cov(spatial, rowvar=False))


def adm_spatial_features(t, layout: str = "NCHW") -> np.ndarray:
    """sFID features from the ``mixed_6/conv`` activations (torch-fidelity's
    ``Mixed_6d.branch1x1`` output, NCHW (N, 192, 17, 17); or NHWC as TF gives it): the first 7
    channels, flattened in TF's (row, column, channel) order: (N, 17 * 17 * 7)."""
    if hasattr(t, "detach"):   # a torch tensor, without importing torch here
        t = t.detach().cpu().numpy()
    a = np.asarray(t)
    if a.ndim != 4:
        raise ValueError(f"expected a 4-D activation map, got shape {a.shape}")
    if layout == "NCHW":
        a = a[:, :SFID_CHANNELS].transpose(0, 2, 3, 1)
    elif layout == "NHWC":
        a = a[..., :SFID_CHANNELS]
    else:
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    if a.shape[-1] != SFID_CHANNELS:
        raise ValueError(f"need at least {SFID_CHANNELS} channels, got {a.shape[-1]}")
    return np.ascontiguousarray(a).reshape(len(a), -1)


def _write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def write_adm_batch(path, images: np.ndarray | Iterable[np.ndarray], count: int | None = None,
                    labels=None, stats: AdmStats | None = None) -> Path:
    """Write a batch the evaluator accepts: ``arr_0`` uint8 NHWC images (an array, or an
    iterable of uint8 batches with ``count`` images in all, streamed), optional ``arr_1``
    labels, optional statistics (all four; see the module docstring before writing them into
    a sample batch). Written to a temporary file and renamed: never a half-written batch."""
    path = Path(path)
    if isinstance(images, np.ndarray):
        _check_images(images.shape, images.dtype, "images")
        count, batches = len(images), [images]
    elif count is None:
        raise ValueError("streaming images from an iterable needs their total count")
    else:
        batches = images
    if labels is not None and len(labels) != count:
        raise ValueError(f"{len(labels)} labels for {count} images")
    if stats is not None:
        stats = AdmStats(*stats)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            written, frame = 0, None
            with zf.open("arr_0.npy", "w", force_zip64=True) as member:
                for batch in batches:
                    batch = np.asarray(batch)
                    _check_images(batch.shape, batch.dtype, "image batch")
                    if frame is None:   # the header needs the frame size: from the first batch
                        frame = batch.shape[1:]
                        np.lib.format.write_array_header_1_0(member, {
                            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                            "fortran_order": False, "shape": (count, *frame)})
                    if batch.shape[1:] != frame:
                        raise ValueError(f"image batch of size {batch.shape[1:]} after {frame}")
                    written += len(batch)
                    if written > count:
                        raise ValueError(f"more than count={count} images")
                    member.write(np.ascontiguousarray(batch).tobytes())
            if frame is None or written != count:
                raise ValueError(f"count={count} but {written} images were given")
            if labels is not None:
                _write_array(zf, "arr_1", np.asarray(labels))
            if stats is not None:
                for key, value in zip(STAT_KEYS, stats):
                    _write_array(zf, key, value)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
