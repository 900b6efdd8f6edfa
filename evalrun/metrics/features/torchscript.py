"""A user's own backbone, for domain data (medical scans, satellite tiles, faces): a TorchScript file,
or (``python_class.py``) a Python ``nn.Module`` class named by its import path.

The contract, the same for both: the module receives float32 images (N, 3, H, W) with values
in [0, 1] (uint8 / 255), at the size they were generated unless ``resize`` says otherwise, and
returns a float tensor (N, D). ``resize`` (an int for a square, or [height, width]) is torch's
bicubic resize with antialiasing on the [0, 1] values, clamped back to [0, 1]. D is read by
calling the module once on zeros at the resize size (224 when there is none), unless ``dim``
is given.

A TorchScript file (``torch.jit.script(model).save(path)`` or ``torch.jit.trace``) carries its
code and weights and needs no import of the user's package; it is identified in results and
cache keys by the file's sha256 (plus the resize setting), never by its path. Loading it runs
the TorchScript program it holds (that is what it is for): load only files you trust, as you
would a Python module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.features.base import FeatureExtractor

PROBE_SIZE = 224
RESIZE = "torch bicubic antialias=True on [0, 1] floats, clamped to [0, 1]"


def parse_resize(resize: Any, key: str) -> tuple[int, int] | None:
    if resize is None:
        return None
    values = [resize, resize] if isinstance(resize, int) and not isinstance(resize, bool) else list(resize) \
        if isinstance(resize, (list, tuple)) else None
    if values is None or len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                     for v in values):
        raise ConfigError(f"{key}={resize!r}: give null (images as generated), an int (a square) or [height, width]")
    return int(values[0]), int(values[1])


class ModuleExtractor(FeatureExtractor):
    """Shared by the TorchScript and Python-class extractors: pixels in, one feature layer out."""

    def __init__(self, device: Any, batch_size: int, resize: Any, dim: int | None, key: str) -> None:
        super().__init__(device, batch_size)
        self.resize = parse_resize(resize, f"{key.rsplit('.', 1)[0]}.resize")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ConfigError(f"{key.rsplit('.', 1)[0]}.dim must be a positive integer or null, got {dim!r}")
        self._dim = dim
        self.key_name = key

    def _finish_load(self, module) -> None:
        self.module = module.to(self.device).eval() if hasattr(module, "eval") else module
        if self._dim is None:
            import torch

            size = self.resize or (PROBE_SIZE, PROBE_SIZE)
            with torch.no_grad():
                self._dim = int(self._call(torch.zeros(2, 3, *size, device=self.device)).shape[1])

    def _call(self, x):
        import torch

        try:
            out = self.module(x)
        except Exception as exc:  # the user's module: any error is theirs, said in one line
            raise EvalrunError(f"{self.key_name}: the module failed on float32 images of shape {tuple(x.shape)} "
                               f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}); "
                               f"set resize to the size it expects") from None
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(x):
            what = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise EvalrunError(f"{self.key_name}: the module must return one (N, D) tensor for N images, got {what}")
        if self._dim is not None and out.shape[1] != self._dim:
            raise EvalrunError(f"{self.key_name}: the module returned {out.shape[1]} features, expected {self._dim}")
        return out

    @property
    def layers(self) -> dict[str, int]:
        return {"embedding": int(self._dim)}

    def preprocessing(self) -> dict[str, Any]:
        return {"input": "float32 (N, 3, H, W) in [0, 1] = uint8 / 255",
                "resize": list(self.resize) if self.resize else None, "resize_filter": RESIZE if self.resize else None}

    def pixels(self, images):
        import torch

        x = images.to(torch.float32) / 255
        if self.resize:
            x = torch.nn.functional.interpolate(x, size=self.resize, mode="bicubic", antialias=True).clamp_(0, 1)
        return x

    def _extract(self, images) -> dict[str, Any]:
        return {"embedding": self._call(self.pixels(images))}


class TorchScriptModel(ModuleExtractor):
    """``torch.jit.load(path)``: float32 [0, 1] images -> {"embedding": (N, D)}."""

    name = "torchscript"

    def __init__(self, device: Any = "cpu", path: str | None = None, resize: Any = None, dim: int | None = None,
                 batch_size: int = 50, key: str = "metrics.fd.feature_extractor_path") -> None:
        super().__init__(device, batch_size, resize, dim, key)
        import torch

        from evalrun.hashing import file_sha256

        if path in (None, "", "???"):
            raise ConfigError(f"{key} is not set: the torchscript extractor needs a TorchScript file "
                              f"(torch.jit.script(model).save(FILE))")
        self.path = Path(str(path)).expanduser()
        if not self.path.is_file():
            raise ConfigError(f"{key}={path}: no such file")
        self.sha256 = file_sha256(self.path)
        try:
            module = torch.jit.load(str(self.path), map_location=self.device)
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise EvalrunError(f"{key}={path}: not a TorchScript file ({first}); save one with "
                               f"torch.jit.script(model).save(FILE) or torch.jit.trace(model, example).save(FILE)") from None
        self._finish_load(module)

    def weights_identity(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "format": "torchscript"}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "feature_extractor_file": str(self.path)}
