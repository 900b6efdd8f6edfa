"""Images on disk: uint8 quantisation, PNGs that carry their own pixel hash, and the content-keyed store.

Every generated image is keyed by what determines its pixels (the run's generation key: model
and weights identity, scheduler class and resolved config, steps, guidance and every task knob,
size, dtype, device type, library versions; plus the image's own prompt/condition content and
generator seed). The store (``$EVALRUN_CACHE/images``) keeps one PNG per key; a run's
``images/`` folder holds hard links to it (copies across file systems), so a re-run, a run
with another metric, or an overlapping sweep in another directory samples nothing twice.

Each PNG carries the hash of its pixels and its degenerate flag in text chunks, and each run
keeps ``images/manifest.jsonl`` (image id, key, hash, flag): on resume an image that is
unreadable, of another size or with another hash is regenerated, with a warning naming it.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from evalrun.hashing import bytes_hash
from evalrun.results import atomic_write_bytes

log = logging.getLogger(__name__)
MANIFEST = "manifest.jsonl"
# Files read as images, wherever images are read (images to score, reference folders): one list, so a
# folder scored against itself reads the same files on both sides.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
# How to_rgb converts, as reference cache keys record it.
RGB_CONVERSION = ("evalrun.images.to_rgb: EXIF rotation, alpha (and a tRNS colour key, 16-bit too) on white, "
                  "16-bit and float scaled to 8 bits")


def to_rgb(image):
    """Any PIL mode -> RGB, the one conversion for every image evalrun reads (scored, reference, edit
    input, in memory): EXIF rotation applied, transparency composited on white (plain
    ``convert("RGB")`` would show whatever colour hides under transparent pixels), 16-bit grayscale
    scaled to 8 bits rather than clipped, float images in [0, 1] scaled by 255."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if image.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            top = 1.0  # a float image in [0, 1]
        else:  # 32-bit modes carry no bit depth: 8-bit values if they fit, else 16-bit
            top = 65535.0 if image.mode.startswith("I;16") or (arr.size and np.nanmax(arr) > 255) else 255.0
        key = image.info.get("transparency")  # a tRNS colour key, in the file's own 16-bit values
        scaled = Image.fromarray((np.nan_to_num(arr).clip(0, top) / top * 255).round().astype(np.uint8), "L")
        if isinstance(key, int) and not isinstance(key, bool):  # kept, as 8-bit grayscale keeps it
            scaled.putalpha(Image.fromarray(np.where(arr == key, 0, 255).astype(np.uint8), "L"))
        image = scaled
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:  # a palette entry or a tRNS colour key
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def to_uint8(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float (N, H, W, 3) in [0, 1] -> uint8 as diffusers' ``numpy_to_pil`` rounds (float32 x 255, round half
    to even); and NaN flags. In place on one copy with torch's threads: numpy's six passes took 5% of a
    GPU run's time at 512 px (the same IEEE float32 operations, so the same bytes; tests/test_trust.py)."""
    import torch

    pixels = torch.from_numpy(np.array(images, dtype=np.float32))
    nan = torch.isnan(pixels).flatten(1).any(dim=1)
    if bool(nan.any()):
        pixels.nan_to_num_(nan=0.0)
    pixels.clamp_(0, 1).mul_(255).round_()
    return pixels.to(torch.uint8).numpy(), nan.numpy()


def degenerate_flag(image: np.ndarray, had_nan: bool) -> str:
    """'' for a normal image; 'nan', 'black' or 'constant' for images that distort metrics."""
    if had_nan:
        return "nan"
    if image.max() == 0:
        return "black"
    if image.min() == image.max():
        return "constant"
    return ""


def pixel_hash(image: np.ndarray) -> str:
    """Hash of a uint8 HWC image's pixels and shape (what the feature cache is keyed by):
    the pixels then the shape, fed as two parts so the pixels are never copied."""
    return bytes_hash(np.ascontiguousarray(image).data, str(image.shape).encode())


def save_png(image: np.ndarray, path: Path, digest: str, flag: str, cost: dict[str, Any] | None = None) -> None:
    """Write atomically, with the pixel hash, flag and sampling cost inside: a killed run never leaves a
    truncated PNG that a re-run would trust, and any copy of the file can be verified on its own."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("evalrun-pixels", digest)
    info.add_text("evalrun-flag", flag)
    info.add_text("evalrun-cost", json.dumps(cost or {}))
    png = io.BytesIO()  # encoded in memory, then one atomic write (a temporary file opened once)
    Image.fromarray(image).save(png, format="PNG", pnginfo=info)
    atomic_write_bytes(path, png.getvalue())


def read_verified(path: Path, digest: str | None, shape: tuple[int, ...] | None = None
                  ) -> tuple[np.ndarray, str, dict[str, Any]] | None:
    """(pixels, flag, cost) if ``path`` decodes, has the expected shape and its pixels hash to ``digest``
    (or to the hash it carries when ``digest`` is None); else None."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            text = dict(getattr(im, "text", {}) or {})
            image = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError):
        return None
    want = digest or text.get("evalrun-pixels")
    if want is None or pixel_hash(image) != want or (shape is not None and image.shape != tuple(shape)):
        return None
    try:
        cost = json.loads(text.get("evalrun-cost", "{}"))
    except ValueError:
        cost = {}
    return image, text.get("evalrun-flag", ""), cost


def link_or_copy(source: Path, target: Path, link: bool = True) -> None:
    """Put ``source`` at ``target`` atomically: a hard link where the file system allows (``link``), else a
    copy. Files evalrun does not own are copied: a link shares their inode (an edit in place would change the
    run's copy) and moves their ctime, which their content identity reads."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    linked = False
    if link:
        try:
            os.link(source, tmp)
            linked = True
        except OSError:  # another file system, or one without hard links
            pass
    if not linked and not _clone(source, tmp):
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _clone(source: Path, target: Path) -> bool:
    """A copy-on-write clone (btrfs, XFS, ZFS, APFS...: no data copied, no space used until either changes);
    False where the file system cannot."""
    try:
        import fcntl

        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), 0x40049409, src.fileno())  # FICLONE
        return True
    except (ImportError, OSError):
        Path(target).unlink(missing_ok=True)
        return False


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (a resumed scoring run finds most of its copies in place)."""
    try:  # not filecmp: it remembers results by (size, mtime), which a cp -p of other bytes keeps
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                chunk = fa.read(1 << 20)
                if chunk != fb.read(1 << 20):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


class ImageStore:
    """Content-keyed PNGs under ``root`` (None: no shared store; images live only in the run)."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = Path(root) if root else None

    def path(self, key: str) -> Path | None:
        return None if self.root is None else self.root / key[:2] / f"{key}.png"

    def get(self, key: str, shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, str, str, dict] | None:
        """(pixels, flag, digest, cost) of a stored image that verifies; a damaged one is removed."""
        path = self.path(key)
        if path is None or not path.exists():
            return None
        found = read_verified(path, None, shape)
        if found is None:
            log.warning("image store file %s is damaged; it will be regenerated", path)
            path.unlink(missing_ok=True)
            return None
        return found[0], found[1], pixel_hash(found[0]), found[2]

    def put(self, key: str, image: np.ndarray, digest: str, flag: str, cost: dict[str, Any]) -> Path | None:
        path = self.path(key)
        if path is not None:
            save_png(image, path, digest, flag, cost)
        return path


class Manifest:
    """``images/manifest.jsonl``: one line per image written (id, key, pixel hash, flag); last line wins."""

    def __init__(self, image_dir: Path) -> None:
        self.path = image_dir / MANIFEST
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["id"]] = entry
                except (ValueError, KeyError, TypeError):  # a line cut by a kill: ignored, the image is re-checked
                    continue

    def add(self, image_id: str, key: str, digest: str, flag: str, cost: dict[str, Any]) -> None:
        entry = {"id": image_id, "key": key, "pixels": digest, "flag": flag, "cost": cost}
        self.entries[image_id] = entry
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def clean_partial_files(folder: Path) -> int:
    """Remove temporary files a killed run left behind (``*.tmp``); returns how many."""
    removed = 0
    if folder.is_dir():
        for tmp in list(folder.glob("*.tmp")) + list(folder.glob(".*.tmp")):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
