"""Inception-v3 of FID, KID, IS (and the ADM protocol): torch-fidelity's network, weights loaded safely.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the one torchmetrics wraps
too): uint8 images in, TF1-compatible bilinear resize to 299 (no antialias; torchmetrics'
default ``antialias=True`` moves FID by ~4e-3 relative), float32 inside. torch-fidelity
loads a weights path with ``torch.load(weights_only=False)``, which runs whatever a pickled
file carries; evalrun reads the file itself with ``weights_only=True`` (it is a plain
name -> tensor dict), checks its sha256 against the official file's, and hands the tensors
to the network.

Weights: torch-fidelity's conversion of the TF 2015-12-05 graph, downloaded on first use
into torch hub's cache (where torchmetrics/torch-fidelity put it, hash-checked) or read from
``feature_extractor_weights_path``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock

import evalrun.tiny as tiny
from evalrun.errors import ConfigError, EvalrunError
from evalrun.hashing import file_sha256
from evalrun.metrics.features.base import FeatureExtractor

URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
FILENAME = URL.rsplit("/", 1)[1]
# sha256 of that file (95,628,359 bytes); its first 8 digits are the suffix of the file name,
# torch hub's naming convention, which the download checks too.
OFFICIAL_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
NAME = "inception-v3-compat"
# pool3 (FID, KID, PRDC, ADM precision/recall), IS logits and the ADM evaluator's sFID features
# (``mixed_6/conv``: Mixed_6d.branch1x1, first 7 of 192 channels of the 17x17 map, flattened in
# TF's NHWC order: 17 * 17 * 7 = 2023), all from one pass.
LAYERS = {"2048": 2048, "logits_unbiased": 1008, "spatial": 2023}
TORCH_FIDELITY_LAYERS = ("2048", "logits_unbiased")  # what the network returns; "spatial" comes from a hook
SPATIAL_MODULE = "Mixed_6d.branch1x1"
SPATIAL_CHANNELS = 7
RESIZE = "torch-fidelity tf1-compatible bilinear to 299x299, no antialias"
TINY = "evalrun/tiny-inception"


def build_tiny_inception(target: Path) -> None:
    """Random Inception weights in the exact file format torch-fidelity/torchmetrics load.

    Default init makes activations vanish (~1e-8, and denormal floats are slow), so the
    BatchNorm running statistics are calibrated on seeded images and the classifier scaled
    so that logits spread (std 4): features and IS are then O(1) and informative.
    """
    import torch
    import torch.nn.functional as F
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    torch.manual_seed(0)
    with mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None), \
            mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}):
        net = tfi.FeatureExtractorInceptionV3(NAME, list(TORCH_FIDELITY_LAYERS))
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


def resolve_weights(path: str | os.PathLike | None, key: str) -> Path:
    """A local weights file: the given one, the tiny random one, or torch-fidelity's, downloaded once."""
    import torch

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
            torch.hub.download_url_to_file(URL, str(target), hash_prefix=OFFICIAL_SHA256[:8], progress=False)
        except Exception as exc:  # URLError, HTTPError, timeouts, SSL, a bad hash: all mean "no good file"
            reason = " ".join(str(exc).split())  # one line, whatever the exception printed
            raise EvalrunError(f"could not download the Inception weights ({type(exc).__name__}: {reason}); fetch {URL} "
                               f"elsewhere and set {key}=/path/to/{FILENAME}") from None
    return target


def load_state_dict(path: Path, key: str) -> dict[str, Any]:
    """The file's tensors, read with ``weights_only=True``: a pickle that would run code is refused."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalrunError(f"{key}={path}: not a weights file that loads safely (weights_only=True refused it: "
                           f"{first[:200]}); use the official {FILENAME} from {URL}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvalrunError(f"{key}={path}: not a weights file (expected a name -> tensor dict)")
    return state


class InceptionV3(FeatureExtractor):
    """uint8 (N, 3, H, W) images -> {"2048": (N, 2048), "logits_unbiased": (N, 1008)}.

    ``weights_sha256``: ``official`` (default) accepts only the official file (or evalrun's tiny
    random one); ``any`` accepts any file that loads, recording its hash; a hex digest accepts
    exactly that file.
    """

    name = "inception"

    def __init__(self, device: Any = "cpu", path: str | os.PathLike | None = None, batch_size: int = 50,
                 weights_sha256: str = "official", key: str = "metrics.fid.feature_extractor_weights_path") -> None:
        super().__init__(device, batch_size)
        self.path = resolve_weights(path, key)
        self.sha256 = file_sha256(self.path)
        self.random_weights = path is not None and tiny.is_tiny(str(path))
        wanted = OFFICIAL_SHA256 if weights_sha256 == "official" else str(weights_sha256).lower()
        if weights_sha256 != "any" and not self.random_weights and self.sha256 != wanted:
            raise EvalrunError(f"{key}={self.path}: sha256 {self.sha256[:16]}... is not the "
                               f"{'official ' + FILENAME if weights_sha256 == 'official' else 'expected ' + wanted[:16] + '...'}; "
                               f"FIDs from other weights are not comparable. To use this file anyway set "
                               f"{key.rsplit('.', 1)[0]}.feature_extractor_weights_sha256=any (its hash is recorded)")
        self.model = self._load(key)

    def _load(self, key: str):
        try:
            import torch_fidelity.feature_extractor_inceptionv3 as tfi
        except ImportError:  # torch-fidelity (and torchvision) are the optional `fid` extra
            raise EvalrunError("FID, KID and IS need torch-fidelity and torchvision: pip install 'evalrun[fid]' "
                               "(or pip install torch-fidelity torchvision matching your torch)") from None
        state = load_state_dict(self.path, key)
        # torch-fidelity's constructor loads weights itself (pickle-unsafe for a path): hand it the
        # tensors read above instead; its strict load_state_dict still checks every key.
        try:
            with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: state):
                net = tfi.FeatureExtractorInceptionV3(NAME, list(TORCH_FIDELITY_LAYERS))
        except RuntimeError as exc:  # missing/unexpected keys or shapes: a different network
            raise EvalrunError(f"{key}={self.path}: not Inception-v3 weights in torch-fidelity's layout "
                               f"({str(exc).splitlines()[0]})") from None
        net = net.to(self.device).eval()
        # The sFID map is an intermediate activation: a forward hook keeps the latest one. It changes
        # nothing in the pass itself (pool3 and logits are bit-identical with and without it).
        self._spatial = None
        net.get_submodule(SPATIAL_MODULE).register_forward_hook(self._keep_spatial)
        return net

    def _keep_spatial(self, module, inputs, output) -> None:
        self._spatial = output

    @property
    def layers(self) -> dict[str, int]:
        return dict(LAYERS)

    def preprocessing(self) -> dict[str, Any]:
        return {"input": "uint8", "resize": RESIZE, "value_range": "(x - 128) / 128",
                "spatial": f"{SPATIAL_MODULE} output (ReLU), channels [:{SPATIAL_CHANNELS}], NHWC flatten (ADM mixed_6/conv)"}

    def weights_identity(self) -> dict[str, Any]:
        # Content only, not the path: a copy of the same file elsewhere hits the same caches.
        return {"sha256": self.sha256, "official": self.sha256 == OFFICIAL_SHA256, "random_weights": self.random_weights}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "feature_extractor_weights_file": str(self.path)}

    def versions(self) -> dict[str, str]:
        import torch_fidelity

        return {**super().versions(), "torch_fidelity": torch_fidelity.__version__}

    def _extract(self, images) -> dict[str, Any]:
        pool, logits = self.model(images)
        spatial = self._spatial[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).reshape(len(images), -1)
        self._spatial = None
        return {"2048": pool, "logits_unbiased": logits, "spatial": spatial}
