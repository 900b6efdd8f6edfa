"""The feature-extractor protocol: a backbone that turns uint8 images into named feature layers.

An extractor declares what its features depend on (``identity``: name, weights sha256,
preprocessing, layers and their dimensions, library versions) and reference caches and the
per-run feature store key features by it, as torch-fidelity keys its caches by every
factor. Importing this module imports no torch.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from evalrun.hashing import stable_hash


class FeatureExtractor(abc.ABC):
    """uint8 (N, 3, H, W) images -> {layer: float32 (N, dim) array}."""

    #: Registry name (``metrics.fd.feature_extractor=<name>``).
    name: ClassVar[str]
    #: The layer metrics use when ``layer`` is not set (None: they must say).
    default_layer: ClassVar[str | None] = None

    def __init__(self, device: Any = "cpu", batch_size: int = 50) -> None:
        import torch

        from evalrun.errors import ConfigError

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"{self.name} feature extractor batch_size must be a positive integer, got {batch_size!r}")
        self.device = torch.device(device)
        self.batch_size = batch_size

    @property
    @abc.abstractmethod
    def layers(self) -> dict[str, int]:
        """Feature layers this extractor gives, with their dimensions."""

    @abc.abstractmethod
    def preprocessing(self) -> dict[str, Any]:
        """What happens to the uint8 pixels before the network: size, interpolation, antialias,
        value range, normalisation."""

    @abc.abstractmethod
    def weights_identity(self) -> dict[str, Any]:
        """Where the weights came from and their sha256 (per file, or of the loaded tensors)."""

    @abc.abstractmethod
    def _extract(self, images) -> dict[str, Any]:
        """One chunk of at most ``batch_size`` images -> {layer: float32 tensor (n, dim)}."""

    def versions(self) -> dict[str, str]:
        """Library versions the features depend on."""
        import torch

        return {"torch": torch.__version__}

    def _checked(self, feats: Any, layer: str, n: int):
        """One layer of ``_extract``'s answer as float32 (n, D) numpy, or a one-line error naming the class: an
        extractor of your own that answered otherwise failed deep in a metric, or had its reference blamed."""
        from collections.abc import Mapping

        import numpy as np
        import torch

        value = feats.get(layer) if isinstance(feats, Mapping) else None
        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu().numpy()
        elif isinstance(value, np.ndarray):
            value = value.astype(np.float32, copy=False)
        want = (n, self.layers[layer])
        if isinstance(value, np.ndarray) and value.shape == want:
            return value
        from evalrun.errors import EvalrunError

        if not isinstance(feats, Mapping):
            got = f"a {type(feats).__name__}"
        elif layer not in feats:
            got = f"no {layer!r} (keys: {', '.join(map(str, feats)) or 'none'})"
        elif not isinstance(value, np.ndarray):
            got = f"{layer!r} as a {type(feats[layer]).__name__}"
        else:
            got = f"{layer!r} of shape {value.shape}"
        cls = type(self)
        raise EvalrunError(f"feature extractor {self.name} ({cls.__module__}.{cls.__qualname__}) returned {got} for "
                           f"{n} images; its _extract must return {{layer: float tensor (n, D)}} for every layer it "
                           f"declares ({', '.join(f'{k}: {v}' for k, v in self.layers.items())})")

    def identity(self) -> dict[str, Any]:
        """Everything the features depend on: the key of reference caches and the feature store. An extractor
        class of your own (outside evalrun) adds the sha256 of the file that defines it: an edit of its code
        is new features, never the cached ones."""
        found = {"extractor": self.name, "weights": self.weights_identity(), "preprocessing": self.preprocessing(),
                 "layers": self.layers, "versions": self.versions(), "dtype": "float32"}
        if not type(self).__module__.startswith("evalrun."):
            from evalrun.plugins import class_source_sha256

            found["source_sha256"] = class_source_sha256(type(self))
        return found

    @property
    def key(self) -> str:
        """Short key of ``identity`` plus what moves float32 round-off (batch size, device type)."""
        if not hasattr(self, "_key"):
            self._key = stable_hash({**self.identity(), "batch_size": self.batch_size,
                                     "device_type": self.device.type}, length=24)
        return self._key

    def extract(self, images, what: str = "images", first: int = 0) -> dict[str, Any]:
        """Features of all ``images`` (uint8 (N, 3, H, W)), in chunks of ``batch_size``, as float32 numpy.
        ``what`` and ``first`` (the position of ``images[0]`` among them) name an image in errors."""
        import numpy as np
        import torch

        from evalrun.numerics import full_float32

        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name} wants uint8 (N, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        out: dict[str, list] = {layer: [] for layer in self.layers}
        with torch.no_grad(), full_float32():  # never TF32 in feature extraction
            for start in range(0, len(images), self.batch_size):
                chunk = images[start:start + self.batch_size]
                feats = self._extract(chunk.to(self.device))
                for layer in out:
                    out[layer].append(self._checked(feats, layer, len(chunk)))
        found = {layer: np.concatenate(v) if v else np.zeros((0, self.layers[layer]), np.float32)
                 for layer, v in out.items()}
        for layer, feats in found.items():
            # A NaN row would be cached and then scored: FID's eigensolver fails on it, ADM counts it off the
            # manifold, a mean turns NaN. Refused here, once for every metric and the reference alike.
            bad = ~np.isfinite(feats).all(axis=1)
            if bad.any():
                from evalrun.errors import EvalrunError

                raise EvalrunError(f"feature extractor {self.name} gave NaN or infinite {layer!r} features for "
                                   f"{int(bad.sum())} of {len(feats)} {what} {first}-{first + len(feats) - 1} (first: "
                                   f"{what.removesuffix('s')} {first + int(np.argmax(bad))}, counted from 0); no metric can use them: "
                                   f"check the extractor's weights and inputs")
        return found

    def info(self) -> dict[str, Any]:
        """Provenance written next to every number computed from these features."""
        return {"feature_extractor": self.name, "feature_extractor_key": self.key,
                "feature_extractor_weights": self.weights_identity(), "feature_preprocessing": self.preprocessing(),
                "feature_batch_size": self.batch_size, "feature_device": str(self.device), "feature_dtype": "float32"}
