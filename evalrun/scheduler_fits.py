"""Which models a scheduler option fits: the ``fits:`` lists of ``conf/scheduler/*.yaml``, read
without diffusers (``config.validate`` refuses a mismatch before torch is imported)."""

from __future__ import annotations

import functools
from typing import Any

FAMILIES = ("epsilon", "v_prediction", "flow")  # what a model predicts (model.prediction); options' fits


@functools.lru_cache(maxsize=None)
def scheduler_options() -> dict[str, dict[str, Any]]:
    """``conf/scheduler/*.yaml`` by option name (read once per process, no diffusers import)."""
    from omegaconf import OmegaConf

    from evalrun.paths import CONF_DIR

    return {p.stem: OmegaConf.to_container(OmegaConf.load(p)) for p in sorted((CONF_DIR / "scheduler").glob("*.yaml"))}


def fitting_options(family: str) -> list[str]:
    """Scheduler options whose ``fits`` include ``family`` (``default``, the checkpoint's own, first)."""
    names = [n for n, o in scheduler_options().items() if family in (o.get("fits") or FAMILIES)]
    return sorted(names, key=lambda n: (n != "default", n))


def mismatch(name: str, fits: list[str], what: str, options: list[str]) -> str:
    return f"scheduler={name} fits {'/'.join(fits)} models, but {what}; use one of: {', '.join(options)}"
