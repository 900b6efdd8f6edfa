"""Text-image preference scorers: PickScore, HPSv2.1, ImageReward.

Each module has ``load_<name>(path_or_id, device, dtype, key)`` returning a ``Scorer``
(``score(images, prompts) -> float64 (N,)``, ``count_truncated(prompts)``, ``info()``) and
``build_tiny_<name>(target)``, which writes random weights in the real checkpoint's file
layout so the real loading code runs offline. Modules import their heavy dependencies
(transformers, open_clip, torchvision) only when a scorer is loaded.

Tiny names (served from the evalrun cache like ``evalrun/tiny-clip``):
``evalrun/tiny-pickscore``, ``evalrun/tiny-hps``, ``evalrun/tiny-image-reward``.
"""

from __future__ import annotations

import importlib
from typing import Callable

from evalrun.metrics.preference._common import Scorer

# scorer name -> "module:loader"; modules are imported on first use
LOADERS = {
    "pickscore": "evalrun.metrics.preference.pickscore:load_pickscore",
    "hps": "evalrun.metrics.preference.hps:load_hps",
    "image_reward": "evalrun.metrics.preference.image_reward:load_image_reward",
}


def _lazy(spec: str) -> Callable:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def load_scorer(name: str, path_or_id: str, **kwargs) -> Scorer:
    if name not in LOADERS:
        raise ValueError(f"unknown preference scorer {name!r}; known: {', '.join(sorted(LOADERS))}")
    return _lazy(LOADERS[name])(path_or_id, **kwargs)


__all__ = ["Scorer", "LOADERS", "load_scorer"]
