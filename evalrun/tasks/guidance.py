"""What ``guidance_scale`` means for a preset (``model.guidance``), and whether it and a negative prompt
reach the images: read from the pipeline's source and the checkpoint's transformer config, so a setting
that would be recorded and keyed without acting is refused before the weights load."""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

from evalrun.errors import ConfigError
from evalrun.tasks.values import call_parameters, negative_prompt, non_negative_number

# What guidance_scale means for a preset (model.guidance).
GUIDANCE = ("cfg", "distilled", "true_cfg", "none")


def check_guidance_scale(cfg: Any) -> None:
    """``guidance_scale`` as the preset's ``model.guidance`` means it: CFG or a distilled guidance
    embedding (a number >= 0), unused (true_cfg: null), or step-distilled without guidance (none: 0)."""
    mode = cfg.model.get("guidance") or "cfg"
    if mode not in GUIDANCE:
        raise ConfigError(f"model.guidance={mode!r} is not valid; use one of {', '.join(GUIDANCE)}")
    value, name = cfg.get("guidance_scale"), cfg.model.name
    if mode == "true_cfg" and value is not None:  # a checkpoint with a guidance embedding: check_guidance_reaches
        raise ConfigError(f"guidance_scale={value!r} has no effect on model {name!r} (model.guidance: true_cfg: its "
                          f"pipeline ignores guidance_scale without a guidance-distilled transformer); sweep "
                          f"true_cfg_scale with a negative prompt instead")
    if mode == "none" and value != 0:
        raise ConfigError(f"model {name!r} is step-distilled to run without guidance (model.guidance: none), so "
                          f"guidance_scale must be 0, got {value!r}; set model.guidance=cfg to run it with CFG anyway "
                          f"(where its pipeline runs CFG from guidance_scale: FLUX.1 runs it from true_cfg_scale)")
    if mode in ("cfg", "distilled"):
        non_negative_number(cfg, "guidance_scale")


# How a pipeline decides to run classifier-free guidance (so to use a negative prompt), in its source:
# ``return self._guidance_scale > 1 [and ...]`` (a do_classifier_free_guidance property) or
# ``do_classifier_free_guidance = guidance_scale > 1.0`` (a local of __call__, PixArt).
_CFG_RULE = re.compile(r"(?:return\s+self\._?guidance_scale|do_classifier_free_guidance\s*=\s*guidance_scale)"
                       r"\s*>\s*(\d+(?:\.\d*)?)\s*(?:$|and\b)", re.MULTILINE)


@functools.lru_cache(maxsize=None)
def cfg_threshold(pipeline_cls: type) -> float | None:
    """The guidance_scale the pipeline must exceed to run classifier-free guidance, the only use it makes of a
    negative prompt (diffusers 0.42: 1 for SD, SDXL, SD3, PixArt, Sana, Chroma, Lumina 2, CogView4; 0 for
    Z-Image), read from its source; None where the source says it another way (nothing is refused)."""
    rule = inspect.getattr_static(pipeline_cls, "do_classifier_free_guidance", None)
    for function in ([rule.fget] if isinstance(rule, property) else []) + [pipeline_cls.__call__]:
        try:
            found = _CFG_RULE.search(inspect.getsource(function))
        except (OSError, TypeError):
            continue
        if found:
            return float(found.group(1))
    return None


@functools.lru_cache(maxsize=None)
def gates_guidance_on_embedding(pipeline_cls: type) -> bool:
    """Whether the pipeline passes guidance_scale to its transformer only when the transformer has a guidance
    embedding (FLUX.1, Kontext, Qwen-Image: ``if self.transformer.config.guidance_embeds``) and ignores it otherwise."""
    try:
        return "transformer.config.guidance_embeds" in inspect.getsource(pipeline_cls.__call__)
    except (OSError, TypeError):
        return False


def guidance_embeds(model: Any) -> bool | None:
    """``guidance_embeds`` from the checkpoint's transformer/config.json (no weights load); None when unreadable.
    Read once per file version (every job of a sweep asks; a hub id once per process)."""
    import os

    import evalrun.tiny as tiny
    from evalrun.hashing import file_stamp

    source = str(tiny.resolve(model.path))
    revision = str(model.revision) if model.get("revision") is not None else None
    local = os.path.join(source, "transformer", "config.json")
    return _guidance_embeds(source, revision, file_stamp(os.stat(local)) if os.path.isfile(local) else None)


@functools.lru_cache(maxsize=64)
def _guidance_embeds(source: str, revision: str | None, stamp: tuple | None) -> bool | None:
    from diffusers.configuration_utils import ConfigMixin

    class TransformerConfig(ConfigMixin):  # load_config reads (and downloads) the one file config_name names
        config_name = "config.json"

    kwargs = {"revision": revision} if revision is not None else {}
    try:
        config = TransformerConfig.load_config(source, subfolder="transformer", **kwargs)
    except (OSError, ValueError, TypeError):
        return None
    value = config.get("guidance_embeds") if isinstance(config, dict) else None
    return value if isinstance(value, bool) else None


def check_guidance_reaches(pipeline_cls: type, cfg: Any) -> None:
    """On a pipeline that feeds guidance_scale only to a guidance embedding, ``model.guidance`` must say what the
    checkpoint's transformer does with it: nothing without one (cfg and distilled would record guidance that never
    ran), the embedding's input with one (true_cfg would leave the pipeline's default guidance_scale unrecorded,
    cfg would name CFG that never ran)."""
    if not gates_guidance_on_embedding(pipeline_cls):
        return
    mode, name, cls_name = cfg.model.get("guidance") or "cfg", cfg.model.name, pipeline_cls.__name__
    embeds = guidance_embeds(cfg.model)
    true_cfg = ("model.guidance=true_cfg guidance_scale=null and sweep true_cfg_scale with a negative prompt, or "
                if "true_cfg_scale" in call_parameters(pipeline_cls) else "")
    if embeds is False and mode in ("cfg", "distilled"):
        raise ConfigError(f"guidance_scale={cfg.get('guidance_scale')!r} has no effect on model {name!r} "
                          f"(model.guidance: {mode}): {cls_name} passes guidance_scale only to a transformer with a "
                          f"guidance embedding, and this checkpoint's has none (guidance_embeds: false in "
                          f"transformer/config.json); use {true_cfg}model.guidance=none guidance_scale=0")
    if embeds is True and mode in ("cfg", "true_cfg"):
        raise ConfigError(f"model.guidance={mode} does not fit model {name!r}: its transformer has a guidance "
                          f"embedding (guidance_embeds: true in transformer/config.json), so {cls_name} feeds "
                          f"guidance_scale to it (distilled guidance, not CFG); set model.guidance=distilled and "
                          f"guidance_scale")


def check_negative_prompt_acts(pipeline_cls: type, cfg: Any) -> None:
    """A negative prompt acts only through classifier-free guidance: refused where guidance_scale turns it off
    (turbo presets at 0, CFG presets at <= 1), or the run would record and key a condition that never ran."""
    negative, mode = negative_prompt(cfg), cfg.model.get("guidance") or "cfg"
    scale, threshold = cfg.get("guidance_scale"), cfg_threshold(pipeline_cls)
    if negative is None or mode not in ("cfg", "none") or scale is None or threshold is None or scale > threshold:
        return
    uses = (f"{pipeline_cls.__name__} uses a negative prompt only for classifier-free guidance, which it runs only "
            f"when guidance_scale > {threshold:g}")
    if mode == "none":
        raise ConfigError(f"prompts.negative_prompt={negative!r} has no effect on model {cfg.model.name!r} "
                          f"(model.guidance: none, guidance_scale={scale}): {uses}; remove the negative prompt (or set "
                          f"model.guidance=cfg and guidance_scale > {threshold:g} to run it with CFG)")
    raise ConfigError(f"prompts.negative_prompt={negative!r} has no effect at guidance_scale={scale}: {uses}; set "
                      f"guidance_scale > {threshold:g} or remove the negative prompt")
