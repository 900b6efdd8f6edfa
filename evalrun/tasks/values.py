"""Config values checked as every task checks them, and what a pipeline's ``__call__`` takes (read from its
signature: no torch or diffusers import here)."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

from evalrun.errors import ConfigError


def positive_int(cfg: Any, key: str, fix: str = "") -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}{fix}")
    return value


def non_negative_number(cfg: Any, key: str, who: str = "") -> float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be a finite number >= 0{who}, got {value!r} (set {key}=... or "
                          f"model.default_{key})")
    return value


def call_parameters(pipeline_cls: type) -> set[str]:
    return set(inspect.signature(pipeline_cls.__call__).parameters)


def call_default(pipeline_cls: type, name: str) -> Any:
    parameter = inspect.signature(pipeline_cls.__call__).parameters.get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def negative_prompt(cfg: Any) -> str | None:
    prompts = cfg.get("prompts")
    value = prompts.get("negative_prompt") if prompts is not None else None
    return None if value is None else str(value)


def protocol_sets(cfg: Any) -> dict[str, Any]:
    """What the run's protocol file (``conf/protocol/<name>.yaml``) sets outside its own section:
    ``num_images_per_prompt`` and ``prompts`` (the prompt set it selects, with its ``prompts:`` values).
    A task that ignores them (unconditional models) must not take them for the user's settings."""
    protocol = cfg.get("protocol")
    name = protocol.get("name") if protocol is not None else None
    return _protocol_file(str(name)) if name not in (None, "none") else {}


@functools.lru_cache(maxsize=4)
def _protocol_file(name: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from evalrun.paths import CONF_DIR

    path = CONF_DIR / "protocol" / f"{name}.yaml"
    if not path.is_file():  # a protocol of one's own (hydra.searchpath): nothing known to set
        return {}
    data = OmegaConf.load(path)
    out: dict[str, Any] = {"num_images_per_prompt": data.get("num_images_per_prompt")}
    chosen = [d["override /prompts"] for d in data.get("defaults") or []
              if hasattr(d, "keys") and "override /prompts" in d]
    if chosen:
        out["prompts"] = OmegaConf.merge(OmegaConf.load(CONF_DIR / "prompts" / f"{chosen[0]}.yaml"),
                                         data.get("prompts") or {})
    return out
