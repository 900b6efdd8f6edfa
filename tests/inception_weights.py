"""Offline test fixtures for the Inception metrics: a random-weights Inception file in the
exact format torch-fidelity and torchmetrics load, and small image sets.

The weights come from torch-fidelity's own ``FeatureExtractorInceptionV3`` after
``torch.manual_seed(0)`` (all 566 state-dict keys, BatchNorm running statistics and
``num_batches_tracked`` included, fc 1008x2048), with BatchNorm statistics calibrated on
seeded images so features do not vanish (see ``evalrun.metrics.features.inception``).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "photos"


@functools.lru_cache(maxsize=None)
def weights_path() -> Path:
    """Built once per test process into a private temp dir (removed at exit)."""
    from evalrun.metrics.features.inception import build_tiny_inception

    tmp = Path(tempfile.mkdtemp(prefix="evalrun-inception-"))
    atexit.register(shutil.rmtree, tmp, True)
    build_tiny_inception(tmp)
    return tmp / "inception.pth"


def load_photos(size: int = 64) -> torch.Tensor:
    """The real photos (mixed sizes, some grayscale) as RGB uint8 (N, 3, size, size), PIL bicubic."""
    from PIL import Image

    files = sorted(p for p in PHOTOS.glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}) if PHOTOS.is_dir() else []
    if not files:
        pytest.skip(f"no photos in {PHOTOS}: ../shared/data is not beside this checkout (see README)")
    out = []
    for p in files:
        with Image.open(p) as img:
            arr = np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.uint8)
        out.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
    return torch.stack(out)


def random_images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Seeded uint8 images: half white noise, half smooth colour fields."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n - n // 2, 3, size, size), generator=gen, dtype=torch.uint8)
    low = torch.rand(n // 2, 3, 4, 4, generator=gen)
    smooth = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return torch.cat([noise, (smooth * 255).round().to(torch.uint8)])


def save_pngs(images: torch.Tensor, directory: Path) -> Path:
    """Lossless PNGs, so a folder reference reads back exactly these uint8 pixels."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(directory / f"{i:04d}.png")
    return directory


class UInt8Dataset(torch.utils.data.Dataset):
    """What torch-fidelity takes as an input: a Dataset of uint8 (3, H, W) tensors."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
