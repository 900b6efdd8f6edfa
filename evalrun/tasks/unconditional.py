"""Unconditional generation (DDPMPipeline, DDIMPipeline): ``num_images`` samples, no prompts.

Sample i is seeded from (seed, i, 0), so a run of N samples contains the first N samples of a
larger run with the same seed.
"""

from __future__ import annotations

import functools
from typing import Any

from evalrun.errors import ConfigError
from evalrun.tasks.base import Task
from evalrun.tasks.values import positive_int, protocol_sets


class Unconditional(Task):
    name = "unconditional"
    knobs = {"steps": "num_inference_steps", "num_images": None}
    count_knobs = ("num_images",)
    more_images = "raise num_images"
    provides = ()  # no prompt, no input image

    def validate(self, cfg: Any) -> None:
        super().validate(cfg)
        if cfg.get("num_images") is None:
            raise ConfigError(f"num_images must be set for unconditional models such as {cfg.model.name!r} "
                              f"(num_images=N or model.default_num_images)")
        positive_int(cfg, "num_images")
        unused = _prompt_settings(cfg)
        if unused:
            raise ConfigError(f"{unused} has no effect on model {cfg.model.name!r} (task {self.name} reads no prompts; "
                              f"the summary would average runs that differ in it as seeds); remove it")

    def load_records(self, cfg: Any) -> list[dict[str, Any]]:
        return [{"prompt_id": i, "prompt": "", "category": None, "challenge": None} for i in range(int(cfg.num_images))]

    def images_per_record(self, cfg: Any) -> int:
        return 1

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        return {"batch_size": len(jobs)}

    def grid(self, cfg: Any, jobs: list):
        from evalrun.grid import GridBuilder

        return GridBuilder.plain(len(jobs), int(cfg.grid_max_images))


def _prompt_settings(cfg: Any) -> str | None:
    """The first prompt-set setting that differs from the default set (config.yaml's ``prompts: doc``, with
    what ``debug=smoke`` sets in it), as ``key=value``; None if the prompts are the untouched default,
    which an unconditional run ignores."""
    prompts = cfg.get("prompts")
    if prompts is None:
        return None
    # offline_sample: debug=smoke's two prompts; a protocol (adm) selects a prompt set of its own
    default = _default_prompts(bool(prompts.get("offline_sample")), protocol_sets(cfg).get("prompts"))
    if prompts.get("name") != default.name:
        return f"prompts={prompts.get('name')}"
    for key in prompts:
        if key != "negative_prompt" and prompts.get(key) != default.get(key):  # negative_prompt: the pipeline check
            return f"prompts.{key}={prompts.get(key)}"
    return None


@functools.lru_cache(maxsize=4)
def _default_prompts(smoke: bool, chosen: Any = None) -> Any:
    """The default prompt set (``conf/prompts/doc.yaml``, or ``chosen``: the protocol's), with what
    ``debug=smoke`` sets in it; read once."""
    from omegaconf import OmegaConf

    from evalrun.paths import CONF_DIR

    default = chosen if chosen is not None else OmegaConf.load(CONF_DIR / "prompts" / "doc.yaml")
    if smoke:
        default = OmegaConf.merge(default, OmegaConf.load(CONF_DIR / "debug" / "smoke.yaml").prompts)
    return default
