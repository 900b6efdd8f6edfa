"""Reading reference images: folder or ``datasets`` split -> uint8 (3, H, W) tensors, cropped and resized.

Images are converted to RGB as images to score are (``evalrun.images.to_rgb``), optionally centre-cropped and resized (PIL bicubic, which
antialiases), and handed to a feature extractor as uint8. A file that cannot be decoded (a
truncated download, a stray non-image) is skipped with a warning naming it and counted in the
results, or refused with ``reference.strict=true``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evalrun.errors import ConfigError, EvalrunError
from evalrun.images import IMAGE_SUFFIXES, to_rgb
from evalrun.reference.spec import ReferenceSpec

log = logging.getLogger(__name__)


def prepare(img, spec: ReferenceSpec):
    """PIL image -> uint8 (3, H, W) tensor after the spec's crop and resize."""
    import torch
    from PIL import Image

    img = to_rgb(img)  # as images to score are read: a folder against itself has an FID of 0
    if spec.center_crop:
        w, h = img.size
        size = min(w, h) if spec.center_crop is True else int(spec.center_crop)
        if size > min(w, h):
            raise EvalrunError(f"reference.center_crop={size} is larger than an image of {w}x{h}")
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    if spec.resize:
        h, w = (spec.resize, spec.resize) if isinstance(spec.resize, int) else spec.resize
        img = img.resize((w, h), resample=Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def selection(total: int, spec: ReferenceSpec) -> np.ndarray:
    if spec.limit is None or spec.limit >= total:
        return np.arange(total)
    if spec.shuffle_seed is None:
        return np.arange(spec.limit)
    return np.sort(np.random.RandomState(spec.shuffle_seed).permutation(total)[:spec.limit])


def folder_files(spec: ReferenceSpec) -> list[Path]:
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"reference.path={spec.path}: not a directory of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise EvalrunError(f"reference.path={spec.path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [files[i] for i in selection(len(files), spec)]


def load_dataset(spec: ReferenceSpec):
    import datasets

    try:
        ds = datasets.load_dataset(spec.path, spec.name, split=spec.split, revision=spec.revision)
    except Exception as exc:  # hub/network/missing split errors come in many types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EvalrunError(f"could not load dataset {spec.path!r} split {spec.split!r} ({first}); "
                           f"{_dataset_fix(first)}") from None
    if spec.image_column not in ds.column_names:
        raise ConfigError(f"reference.image_column={spec.image_column!r} is not a column of {spec.path}; "
                          f"columns: {', '.join(ds.column_names)}")
    return ds.select(selection(len(ds), spec).tolist())


def _dataset_fix(error: str) -> str:
    """What to change, from what ``datasets`` said: the split or config name, else where the data comes from."""
    import os

    if "split" in error.lower():
        return "set reference.split= to one of the dataset's splits"
    if "config" in error.lower():
        return "set reference.name= to one of the dataset's configurations"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "offline, only a copy cached earlier or on disk loads: reference.path=LOCAL_DIR"
    return "offline, set HF_HUB_OFFLINE=1 to use a cached copy, or reference.path=LOCAL_DIR"


def _to_pil(value):
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        import io
        return Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
    if isinstance(value, (str, os.PathLike)):
        return Image.open(value)
    return Image.fromarray(np.asarray(value))


def iter_images(spec: ReferenceSpec, skipped: list[str]) -> Iterator:
    """The spec's images in order; names of undecodable files are appended to ``skipped``."""
    from PIL import Image, UnidentifiedImageError

    unreadable = (OSError, UnidentifiedImageError, SyntaxError)

    def skip(name: str, exc: BaseException) -> None:
        if spec.strict:
            raise EvalrunError(f"reference image {name} cannot be read ({exc}); fix or remove it, "
                               f"or set reference.strict=false to skip unreadable files") from None
        log.warning("reference image %s cannot be read (%s): skipped and counted (reference_skipped)", name, exc)
        skipped.append(name)

    if spec.kind == "folder":
        for path in folder_files(spec):
            try:
                with Image.open(path) as img:
                    img.load()
                    yield prepare(img, spec)
            except unreadable as exc:
                skip(str(path), exc)
    elif spec.kind == "dataset":
        import datasets

        ds = load_dataset(spec)
        feature = ds.features[spec.image_column]
        decode = None
        if isinstance(feature, datasets.Image) and feature.decode:
            # Rows are decoded here, one at a time, so that one undecodable file is skipped (or refused
            # with strict) like a folder's, rather than failing the iteration; decoded as datasets does.
            ds, decode = ds.cast_column(spec.image_column, datasets.Image(decode=False)), feature.decode_example
        for i, row in enumerate(ds):
            value = row[spec.image_column]
            name = value.get("path") if isinstance(value, dict) and value.get("path") else f"{spec.describe()} row {i}"
            try:
                if value is None:
                    raise ValueError("no image in this row")
                img = decode(value) if decode is not None else _to_pil(value)
                img.load()
                yield prepare(img, spec)
            except (*unreadable, ValueError) as exc:  # datasets: ValueError for a row with neither bytes nor path
                skip(name, exc)
    elif spec.kind == "adm":  # arr_0 as the evaluator streams it: uint8 NHWC, no crop or resize
        import torch

        from evalrun.metrics.functional.adm_batches import iter_images as adm_images

        try:
            for batch in adm_images(spec.path, 64):
                for img in batch:
                    yield torch.from_numpy(img.copy()).permute(2, 0, 1).contiguous()
        except ValueError as exc:  # arr_0 of another dtype or layout: the file, not a bug
            raise EvalrunError(f"reference.path: {exc}; save arr_0 as guided-diffusion's batches are (np.savez of "
                               f"uint8 images, N x H x W x 3)") from None
    else:
        raise EvalrunError(f"reference kind {spec.kind!r} has no images")


def batches(images: Iterator, batch_size: int) -> Iterator:
    """Stacks of up to batch_size consecutive images of one size (mixed sizes are allowed)."""
    import torch

    batch: list = []
    for img in images:
        if batch and (len(batch) == batch_size or img.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield torch.stack(batch)
