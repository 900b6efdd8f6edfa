"""Config values as plain Python (a leaf module: tasks, keys and metrics use it without importing config)."""

from __future__ import annotations

from typing import Any


def to_plain(cfg: Any) -> Any:
    """An OmegaConf node as resolved dicts/lists/scalars; anything else unchanged."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
