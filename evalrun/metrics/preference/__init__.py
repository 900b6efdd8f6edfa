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
from pathlib import Path
from typing import Callable

from evalrun import tiny
from evalrun.metrics.preference._common import Scorer

# scorer name -> "module:loader"; modules are imported on first use
LOADERS = {
    "pickscore": "evalrun.metrics.preference.pickscore:load_pickscore",
    "hps": "evalrun.metrics.preference.hps:load_hps",
    "image_reward": "evalrun.metrics.preference.image_reward:load_image_reward",
}
TINY_BUILDERS = {
    "evalrun/tiny-pickscore": "evalrun.metrics.preference.pickscore:build_tiny_pickscore",
    "evalrun/tiny-hps": "evalrun.metrics.preference.hps:build_tiny_hps",
    "evalrun/tiny-image-reward": "evalrun.metrics.preference.image_reward:build_tiny_image_reward",
}


def _lazy(spec: str) -> Callable:
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def load_scorer(name: str, path_or_id: str, **kwargs) -> Scorer:
    if name not in LOADERS:
        raise ValueError(f"unknown preference scorer {name!r}; known: {', '.join(sorted(LOADERS))}")
    return _lazy(LOADERS[name])(path_or_id, **kwargs)


def _register_tiny() -> None:
    # tiny.BUILDERS also takes "module:function" strings; until they are listed there, register here.
    for name, spec in TINY_BUILDERS.items():
        if name not in tiny.BUILDERS:
            tiny.register_builder(name, lambda target, spec=spec: _lazy(spec)(Path(target)))


_register_tiny()

__all__ = ["Scorer", "LOADERS", "TINY_BUILDERS", "load_scorer"]
