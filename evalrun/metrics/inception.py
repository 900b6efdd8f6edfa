"""The Inception-v3 feature extractor of FID, KID and IS, shared by all three.

It is torch-fidelity's ``FeatureExtractorInceptionV3`` (the network torchmetrics wraps too):
uint8 images in, TF1-compatible bilinear resize to 299 (no antialias; torchmetrics'
default ``antialias=True`` moves FID by ~4e-3 relative), float32 inside. One model per
(weights file, device) per process, and features of a batch are memoised, so FID, KID
and IS in one run pass each image through Inception once.

Weights: torch-fidelity's conversion of the TF 2015-12-05 graph, downloaded on first use
into torch hub's cache (where torchmetrics/torch-fidelity put it) or read from
``feature_extractor_weights_path``; their sha256 goes into every result and cache key.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalrun import tiny
from evalrun.config import full_float32
from evalrun.errors import ConfigError, EvalrunError

URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
FILENAME = URL.rsplit("/", 1)[1]
NAME = "inception-v3-compat"
LAYERS = ("2048", "logits_unbiased")  # pool3 features (FID, KID) and IS logits, in one pass
RESIZE = "torch-fidelity tf1-compatible bilinear to 299x299, no antialias"
TINY = "evalrun/tiny-inception"

_MODELS: dict[tuple[str, str], Any] = {}
_SHA256: dict[tuple[str, int, int], str] = {}
_MEMO: "OrderedDict[tuple, dict[str, np.ndarray]]" = OrderedDict()
_MEMO_MAX_ROWS = 8192  # ~100 MB of features


def build_tiny_inception(target: Path) -> None:
    """Random Inception weights in the exact file format torch-fidelity/torchmetrics load.

    Default init makes activations vanish (~1e-8, and denormal floats are slow), so the
    BatchNorm running statistics are calibrated on seeded images and the classifier scaled
    so that logits spread (std 4): features and IS are then O(1) and informative.
    """
    from unittest import mock

    import torch.nn.functional as F
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    torch.manual_seed(0)
    with mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None), \
            mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}):
        net = tfi.FeatureExtractorInceptionV3(NAME, list(LAYERS))
    gen = torch.Generator().manual_seed(1)
    noise = torch.randint(0, 256, (4, 3, 64, 64), generator=gen, dtype=torch.uint8)
    smooth = F.interpolate(torch.rand(4, 3, 6, 6, generator=gen), size=(64, 64), mode="bicubic", align_corners=False)
    calib = torch.cat([noise, (smooth.clamp(0, 1) * 255).round().to(torch.uint8)])
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one pass sets running stats to the batch stats
    with torch.no_grad():
        net.train()
        net(calib)
        net.eval()
        _, logits = net(calib)
        net.fc.weight.mul_(4.0 / logits.std())
    torch.save(net.state_dict(), target / "inception.pth")


def resolve_weights(path: str | os.PathLike | None, key: str = "metrics.fid.feature_extractor_weights_path") -> Path:
    """A local weights file: the given one, the tiny random one, or torch-fidelity's, downloaded once."""
    if path is not None:
        if tiny.is_tiny(str(path)):
            return Path(tiny.resolve(str(path))) / "inception.pth"
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"{key}={path}: no such file; point it at {FILENAME} (from {URL})")
        return p
    target = Path(torch.hub.get_dir()) / "checkpoints" / FILENAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(URL, str(target), progress=False)
        except Exception as exc:  # URLError, HTTPError, timeouts, SSL: all mean "no network"
            reason = " ".join(str(exc).split())  # one line, whatever the exception printed
            raise EvalrunError(f"could not download the Inception weights ({type(exc).__name__}: {reason}); fetch {URL} "
                               f"elsewhere and set {key}=/path/to/{FILENAME}") from None
    return target


def sha256_file(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


class InceptionExtractor:
    """uint8 (N, 3, H, W) images -> {"2048": (N, 2048), "logits_unbiased": (N, 1008)} float32 arrays."""

    def __init__(self, weights_path: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                 batch_size: int = 50, key: str = "metrics.fid.feature_extractor_weights_path") -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"Inception batch_size must be >= 1, got {batch_size}")
        self.weights = resolve_weights(weights_path, key)
        self.sha256 = sha256_file(self.weights)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = self._load()

    def _load(self):
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:  # torch-fidelity (and torchvision) are the optional `fid` extra
            raise EvalrunError("FID, KID and IS need torch-fidelity and torchvision: pip install -e '.[fid]' "
                               "(or pip install torch-fidelity torchvision matching your torch)") from None

        cache_key = (self.sha256, str(self.device))
        if cache_key not in _MODELS:
            try:
                net = FeatureExtractorInceptionV3(NAME, list(LAYERS), feature_extractor_weights_path=str(self.weights))
            except RuntimeError as exc:  # strict load_state_dict: wrong file
                raise EvalrunError(f"{self.weights} is not an Inception weights file torch-fidelity can load "
                                   f"({str(exc).splitlines()[0]})") from None
            _MODELS[cache_key] = net.to(self.device).eval()
        return _MODELS[cache_key]

    @torch.no_grad()
    def _extract(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        out: dict[str, list[np.ndarray]] = {layer: [] for layer in LAYERS}
        for start in range(0, len(images), self.batch_size):
            with full_float32():
                feats = self.model(images[start:start + self.batch_size].to(self.device))
            for layer, f in zip(LAYERS, feats):
                out[layer].append(f.float().cpu().numpy())
        return {layer: np.concatenate(v) if v else np.zeros((0, 2048 if layer == "2048" else 1008), np.float32)
                for layer, v in out.items()}

    def features(self, images: torch.Tensor, memo: bool = True) -> dict[str, np.ndarray]:
        """Features of a batch; ``memo`` lets the other Inception metrics of the run reuse them."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Inception wants uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        if not memo:
            return self._extract(images)
        images = images.contiguous()
        digest = hashlib.blake2b(images.cpu().numpy().tobytes(), digest_size=16).hexdigest()
        key = (self.sha256, str(self.device), self.batch_size, tuple(images.shape), digest)
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]
        feats = self._extract(images)
        _MEMO[key] = feats
        while sum(len(v["2048"]) for v in _MEMO.values()) > _MEMO_MAX_ROWS and len(_MEMO) > 1:
            _MEMO.popitem(last=False)
        return feats

    def pool_features(self, images: torch.Tensor) -> np.ndarray:
        """pool3 features of reference images (not memoised: they are cached on disk instead)."""
        return self.features(images, memo=False)["2048"]

    def cache_id(self, layer: str) -> dict[str, Any]:
        """What reference features of ``layer`` depend on (the reference cache key)."""
        import torch_fidelity

        return {"extractor": NAME, "layer": layer, "weights_sha256": self.sha256, "resize": RESIZE,
                "dtype": "float32", "torch_fidelity": torch_fidelity.__version__}

    def info(self) -> dict[str, Any]:
        return {"feature_extractor": NAME, "feature_extractor_weights": str(self.weights),
                "feature_extractor_weights_sha256": self.sha256, "inception_resize": RESIZE,
                "inception_dtype": "float32", "inception_batch_size": self.batch_size,
                "inception_device": str(self.device)}


def clear_cache() -> None:
    _MODELS.clear()
    _MEMO.clear()
