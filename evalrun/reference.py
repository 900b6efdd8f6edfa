"""Reference (real) images for the distribution metrics, and their cached features.

A reference is a folder of images, a ``datasets`` split with an image column, or an
``.npz`` of FID statistics (``mu``, ``sigma``: what pytorch-fid and clean-fid write).
Images are converted to RGB with PIL, optionally centre-cropped and resized (PIL bicubic,
which antialiases), and handed to a feature extractor as uint8.

Features are cached on disk under a key built from everything that changes them: the
images' content (sha256 of each selected file, or the dataset's fingerprint), the
selection (limit, shuffle_seed), the preprocessing and the extractor (name, layer, weights
sha256, resize, library version). Not the path: a copy of the same folder hits the same
entry. Not the device: CPU and GPU features differ only at float32 round-off. So a sweep
computes them once, and a lock file stops parallel jobs from computing them side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalrun import tiny
from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.functional.fid import GaussianStats

KINDS = ("none", "folder", "dataset", "npz")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
CACHE_VERSION = 1
HINT = ("set reference=folder reference.path=DIR (or reference=dataset reference.path=NAME_OR_DIR, "
        "or reference=npz reference.path=stats.npz)")
Extract = Callable[[torch.Tensor], np.ndarray]


@dataclass(frozen=True)
class ReferenceSpec:
    kind: str
    path: str | None = None
    name: str | None = None          # dataset config name
    split: str = "train"
    image_column: str = "image"
    revision: str | None = None
    center_crop: bool | int = False  # True: largest centred square; int: that square size
    resize: int | tuple[int, int] | None = None  # int: square; [height, width]
    limit: int | None = None         # first N images, or N drawn with shuffle_seed
    shuffle_seed: int | None = None

    @classmethod
    def from_config(cls, cfg: Any, metric: str) -> "ReferenceSpec":
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg = dict(cfg or {})
        if cfg.get("kind", "none") in (None, "none"):
            raise EvalrunError(f"{metric} needs a reference: {HINT}")
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"reference has no key(s) {', '.join(unknown)}; valid: {', '.join(cls.__dataclass_fields__)}")
        if cfg["kind"] not in KINDS:
            raise ConfigError(f"reference.kind={cfg['kind']!r}; valid: {', '.join(KINDS)}")
        if not cfg.get("path"):
            raise ConfigError(f"reference.path is not set: {HINT}")
        resize = cfg.get("resize")
        if isinstance(resize, (list, tuple)):
            resize = tuple(int(v) for v in resize)
            if len(resize) != 2:
                raise ConfigError(f"reference.resize must be an int or [height, width], got {list(resize)}")
        elif resize is not None:
            resize = int(resize)
        for key in ("limit", "center_crop"):
            value = cfg.get(key)
            if value is not None and not isinstance(value, bool) and int(value) < 1:
                raise ConfigError(f"reference.{key} must be >= 1, got {value}")
        path = Path(str(cfg["path"])).expanduser()
        if cfg["kind"] == "folder" and not path.is_dir():
            raise ConfigError(f"reference.path={cfg['path']}: not a directory of images")
        if cfg["kind"] == "npz" and not path.is_file():
            raise ConfigError(f"reference.path={cfg['path']}: no such .npz file")
        return cls(**{**cfg, "path": str(cfg["path"]), "resize": resize})

    def describe(self) -> str:
        extra = f"[{self.split}]" if self.kind == "dataset" else ""
        return f"{self.kind}:{self.path}{extra}"

    def preprocessing(self) -> dict[str, Any]:
        import PIL  # its version decides JPEG decoding and the bicubic kernel, so it is part of the key

        return {"convert": "PIL Image.convert('RGB') (alpha dropped)", "center_crop": self.center_crop,
                "resize": list(self.resize) if isinstance(self.resize, tuple) else self.resize,
                "resize_filter": "PIL bicubic (antialiased), uint8" if self.resize else None, "pillow": PIL.__version__}


# ----------------------------------------------------------------------------- images
def prepare(img, spec: ReferenceSpec) -> torch.Tensor:
    """PIL image -> uint8 (3, H, W) after the spec's crop and resize."""
    from PIL import Image

    img = img.convert("RGB")
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


def _selection(total: int, spec: ReferenceSpec) -> np.ndarray:
    if spec.limit is None or spec.limit >= total:
        return np.arange(total)
    if spec.shuffle_seed is None:
        return np.arange(spec.limit)
    return np.sort(np.random.RandomState(spec.shuffle_seed).permutation(total)[:spec.limit])


def _folder_files(spec: ReferenceSpec) -> list[Path]:
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"reference.path={spec.path}: not a directory of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise EvalrunError(f"reference.path={spec.path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [files[i] for i in _selection(len(files), spec)]


def _load_dataset(spec: ReferenceSpec):
    import datasets

    try:
        ds = datasets.load_dataset(spec.path, spec.name, split=spec.split, revision=spec.revision)
    except Exception as exc:  # hub/network/missing split errors come in many types
        raise EvalrunError(f"could not load dataset {spec.path!r} split {spec.split!r} ({str(exc).splitlines()[0]}); "
                           f"offline, set HF_HUB_OFFLINE=1 to use a cached copy or reference.path=LOCAL_DIR") from None
    if spec.image_column not in ds.column_names:
        raise ConfigError(f"reference.image_column={spec.image_column!r} is not a column of {spec.path}; "
                          f"columns: {', '.join(ds.column_names)}")
    return ds.select(_selection(len(ds), spec).tolist())


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


def iter_images(spec: ReferenceSpec) -> Iterator[torch.Tensor]:
    from PIL import Image

    if spec.kind == "folder":
        for path in _folder_files(spec):
            with Image.open(path) as img:
                yield prepare(img, spec)
    elif spec.kind == "dataset":
        for row in _load_dataset(spec):
            yield prepare(_to_pil(row[spec.image_column]), spec)
    else:
        raise EvalrunError(f"reference kind {spec.kind!r} has no images")


def batches(images: Iterator[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Stacks of up to batch_size consecutive images of one size (mixed sizes are allowed)."""
    batch: list[torch.Tensor] = []
    for img in images:
        if batch and (len(batch) == batch_size or img.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield torch.stack(batch)


# ----------------------------------------------------------------------------- cache
def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or tiny.cache_dir()) / "reference"


def _file_sha256(path: Path, manifest: dict[str, list]) -> str:
    """sha256 of a file, reused from ``manifest`` while its size and mtime are unchanged."""
    st = path.stat()
    entry = manifest.get(str(path))
    if entry and entry[:2] == [st.st_size, st.st_mtime_ns]:
        return entry[2]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest[str(path)] = [st.st_size, st.st_mtime_ns, digest]
    return digest


def source_fingerprint(spec: ReferenceSpec, root: Path) -> dict[str, Any]:
    """What identifies the selected images' content (never their location)."""
    if spec.kind == "folder":
        files = _folder_files(spec)
        manifest_path = root / "manifests" / (hashlib.sha256(str(Path(spec.path).resolve()).encode()).hexdigest()[:32] + ".json")
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        hashes = [_file_sha256(p, manifest) for p in files]
        _atomic_write(manifest_path, json.dumps(manifest).encode())
        return {"kind": "folder", "n": len(files), "content_sha256": hashlib.sha256("\n".join(hashes).encode()).hexdigest()}
    ds = _load_dataset(spec)
    return {"kind": "dataset", "n": len(ds), "fingerprint": ds._fingerprint, "path": spec.path, "name": spec.name,
            "split": spec.split, "revision": spec.revision, "image_column": spec.image_column}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            import fcntl
            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # no flock (Windows): parallel jobs may compute twice, never corrupt
            pass
        yield


def _entry(spec: ReferenceSpec, extractor_id: dict[str, Any], extract: Extract, cache_dir, batch_size: int):
    """The cache entry directory for (images, extractor), computing its features if absent."""
    if spec.kind == "npz":
        raise EvalrunError(f"reference {spec.describe()} holds only FID statistics; this metric needs reference "
                           f"images: set reference=folder reference.path=DIR or reference=dataset reference.path=NAME")
    root = cache_root(cache_dir)
    desc = {"version": CACHE_VERSION, "source": source_fingerprint(spec, root), "preprocessing": spec.preprocessing(),
            "selection": {"limit": spec.limit, "shuffle_seed": spec.shuffle_seed}, "extractor": extractor_id}
    key = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()
    entry, status = root / key[:32], "hit"
    with _lock(root / "locks" / f"{key[:32]}.lock"):
        if not (entry / "features.npy").exists():
            status = "computed"
            features = np.concatenate([extract(b) for b in batches(iter_images(spec), batch_size)]).astype(np.float32)
            meta = {**desc, "key": key, "reference": spec.describe(), "n": len(features), "batch_size": batch_size,
                    "torch": torch.__version__}
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=key[:32] + "."))
            np.save(tmp / "features.npy", features)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
    n = json.loads((entry / "meta.json").read_text())["n"]
    return entry, {"reference": spec.describe(), "reference_n": n, "reference_cache_key": key[:32],
                   "reference_cache": status, "reference_preprocessing": spec.preprocessing()}


def reference_features(spec: ReferenceSpec, extractor_id: dict[str, Any], extract: Extract,
                       cache_dir: str | os.PathLike | None = None, batch_size: int = 50) -> tuple[np.ndarray, dict]:
    """Features of the reference images (computed once, then read from the cache) and their info."""
    entry, info = _entry(spec, extractor_id, extract, cache_dir, batch_size)
    return np.load(entry / "features.npy"), info


def reference_stats(spec: ReferenceSpec, extractor_id: dict[str, Any], extract: Extract,
                    cache_dir: str | os.PathLike | None = None, batch_size: int = 50) -> tuple[GaussianStats, dict]:
    """FID statistics of the reference: from the .npz, or from cached features (stats cached beside them)."""
    if spec.kind == "npz":
        stats, meta = load_npz(spec.path)
        same = meta.get("extractor") == extractor_id if meta else None
        return stats, {"reference": spec.describe(), "reference_n": stats.n, "reference_npz_meta": meta or None,
                       "reference_extractor_matches": same}
    entry, info = _entry(spec, extractor_id, extract, cache_dir, batch_size)
    if (entry / "stats.npz").exists():
        return load_npz(entry / "stats.npz")[0], info
    stats = GaussianStats.from_features(np.load(entry / "features.npy"))
    save_npz(entry / "stats.npz", stats, json.loads((entry / "meta.json").read_text()))
    return stats, info


# ----------------------------------------------------------------------------- .npz
def save_npz(path: str | os.PathLike, stats: GaussianStats, meta: dict | None = None) -> None:
    """pytorch-fid/clean-fid layout (``mu``, ``sigma``) plus ``n``, evalrun's provenance as JSON
    and, for n <= D, the low-rank ``factor`` (so the exact trace survives a round trip)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".npz")
    os.close(fd)
    extra = {} if stats.factor is None else {"factor": stats.factor}
    np.savez(tmp, mu=stats.mu, sigma=stats.sigma, n=np.int64(stats.n if stats.n is not None else -1),
             evalrun_meta=np.array(json.dumps(meta or {}, default=str)), **extra)
    os.replace(tmp, path)


def load_npz(path: str | os.PathLike) -> tuple[GaussianStats, dict]:
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
            n = int(f["n"]) if "n" in f.files and int(f["n"]) >= 0 else None
            meta = json.loads(str(f["evalrun_meta"])) if "evalrun_meta" in f.files else {}
            factor = np.asarray(f["factor"], np.float64) if "factor" in f.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise EvalrunError(f"{path}: not an .npz with 'mu' and 'sigma' ({exc})") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise EvalrunError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    if factor is not None and factor.shape[1:] != mu.shape:
        raise EvalrunError(f"{path}: factor {factor.shape} does not fit mu {mu.shape}")
    return GaussianStats(mu, sigma, n, factor), meta


if __name__ == "__main__":  # python -m evalrun.reference {list,export} ...
    from evalrun.reference_cli import main

    raise SystemExit(main())
