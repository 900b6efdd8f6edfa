"""A Python ``nn.Module`` class as a feature extractor, named by its import path (Hydra's ``_target_``).

    metrics.fd.feature_extractor=python metrics.fd.feature_extractor_target=my_pkg.nets.Encoder \
        +metrics.fd.feature_extractor_kwargs.weights=/data/encoder.pt

or in a config file ``feature_extractor: {_target_: my_pkg.nets.Encoder, weights: /data/encoder.pt}``.
The class is imported (``my_pkg.nets.Encoder`` or ``my_pkg.nets:Encoder``) and built with the
keyword arguments, then used as the TorchScript extractor is (torchscript.py: float32 images in
[0, 1], optional ``resize``, (N, D) out). Importing runs the package's code: name only code
you trust. Identity (results and cache keys): the class path, the keyword arguments, the
resize setting, the sha256 of the built module's ``state_dict`` tensors, so a change of weights is a
new key (a module initialised at random without a seed gets a new key every time), and the sha256 of
the source file that defines the class, so an edit of its code is a new key too (a parameter-free
pooling layer changed from average to max kept its key otherwise).
"""

from __future__ import annotations

import importlib
from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.plugins import class_source_sha256
from evalrun.metrics.features.torchscript import ModuleExtractor


def import_target(target: str, key: str) -> Any:
    """``pkg.mod.Class`` or ``pkg.mod:Class`` -> the object."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{key} is not set: name a class as pkg.module.Class")
    module_name, _, attr = target.partition(":") if ":" in target else target.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{key}={target!r}: name a class as pkg.module.Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}={target!r}: cannot import {module_name} ({exc}); is its package installed or on "
                          f"PYTHONPATH?") from None
    if not hasattr(module, attr):
        raise ConfigError(f"{key}={target!r}: {module_name} has no attribute {attr!r}")
    return getattr(module, attr)


class PythonModel(ModuleExtractor):
    """``target(**kwargs)``: an ``nn.Module``, float32 [0, 1] images -> {"embedding": (N, D)}."""

    name = "python"

    def __init__(self, device: Any = "cpu", target: str | None = None, kwargs: dict | None = None, resize: Any = None,
                 dim: int | None = None, batch_size: int = 50, key: str = "metrics.fd.feature_extractor_target") -> None:
        super().__init__(device, batch_size, resize, dim, key)
        import torch

        self.target, self.kwargs = str(target), dict(kwargs or {})
        cls = import_target(target, key)
        try:
            module = cls(**self.kwargs)
        except Exception as exc:  # the user's constructor
            raise EvalrunError(f"{key}={target!r}: building it with {self.kwargs} failed ({type(exc).__name__}: "
                               f"{str(exc).strip()[:200]})") from None
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"{key}={target!r} built a {type(module).__name__}, not a torch.nn.Module")
        self._state: str | None = None
        self._source = class_source_sha256(cls)  # an edit of its code is a new key
        self._finish_load(module)

    def weights_identity(self) -> dict[str, Any]:
        if self._state is None:
            from evalrun.hashing import tensors_sha256

            self._state = tensors_sha256({"module": self.module})
        return {"class": self.target, "kwargs": self.kwargs, "tensors_sha256": self._state, "source_sha256": self._source}
