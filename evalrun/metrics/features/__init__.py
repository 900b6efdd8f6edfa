"""Feature extractors behind one registry, loaded once per process and shared by every metric.

A backbone of your own is one module with a
:class:`~evalrun.metrics.features.base.FeatureExtractor` subclass, named by import path
(``metrics.fd.feature_extractor=my_pkg.backbones:SwAV``) or from a metric yaml; a line here makes it
a built-in (README, "Extending evalrun").
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from evalrun.errors import ConfigError

# name -> "module:Class", imported on first use.
EXTRACTORS: dict[str, str] = {
    "inception": "evalrun.metrics.features.inception:InceptionV3",
    "clip": "evalrun.metrics.features.clip:CLIPImageText",
    "dinov2": "evalrun.metrics.features.dinov2:DINOv2",
    "torchscript": "evalrun.metrics.features.torchscript:TorchScriptModel",
    "python": "evalrun.metrics.features.python_class:PythonModel",
}

_LOADED: dict[tuple, Any] = {}


def is_known(name: str) -> bool:
    """A registered name, or an import path (``package.module:Class``) to a subclass of FeatureExtractor."""
    from evalrun.plugins import is_import_path

    return name in EXTRACTORS or is_import_path(name)


def extractor_class(name: str) -> type:
    from evalrun.plugins import is_import_path, load_class

    if is_import_path(name):
        from evalrun.metrics.features.base import FeatureExtractor

        return load_class(name, "feature_extractor", FeatureExtractor)
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown feature extractor {name!r}; valid: {', '.join(sorted(EXTRACTORS))}")
    module, cls = EXTRACTORS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def check_options(name: str, options: dict[str, Any], key: str) -> None:
    """Refuse options the extractor does not take, naming the valid ones (before anything loads)."""
    params = inspect.signature(extractor_class(name).__init__).parameters
    allowed = [p for p in params if p not in ("self", "device")]
    unknown = sorted(set(options) - set(allowed) - {"key"})  # key: evalrun's, naming a config key in messages
    if unknown:
        raise ConfigError(f"{key}: feature extractor {name!r} takes no option(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(allowed)}")


def build_extractor(name: str, device: Any = "cpu", **options: Any):
    """The extractor ``name`` with ``options``, loaded once per process (a sweep's jobs share it)."""
    # ``key`` only names the config key in error messages: metrics that differ in it share the model.
    # A file or folder option also keys by its files' stamps: one replaced between two jobs of one process
    # (a re-exported TorchScript backbone, a re-saved CLIP folder) is loaded again, never served stale.
    key = (name, str(device), tuple(sorted((k, str(v), _file_stamp(v)) for k, v in options.items() if k != "key")))
    if key not in _LOADED:
        from evalrun.plugins import build, is_import_path

        cls = extractor_class(name)
        # The key naming the class (metrics.fd.feature_extractor), not the one naming its weights path.
        message_key = str(options.get("key") or "feature_extractor")
        where = message_key.rsplit(".", 1)[0] + ".feature_extractor" if "." in message_key else "feature_extractor"
        params = inspect.signature(cls.__init__).parameters
        if "key" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            options = {k: v for k, v in options.items() if k != "key"}  # a class of your own need not take it
        _LOADED[key] = (build(cls, name, where, device=device, **options)
                        if is_import_path(name) else cls(device=device, **options))
    return _LOADED[key]


def _file_stamp(value: Any) -> tuple | None:
    from evalrun.hashing import path_stamp

    return path_stamp(value)


def clear_cache() -> None:
    _LOADED.clear()
