"""A job config's interpolations resolved in place, as ``OmegaConf.resolve`` resolves them, with each
distinct interpolation text parsed once per process.

Every job of a sweep holds the same interpolations (``steps: ${model.default_steps}``, the metrics'
``${oc.select:model.clip_model,...}``), and OmegaConf parses each one with its ANTLR grammar every
time it resolves it: 60% of checking a job's config, 2 ms a job. The parse tree depends on the text
alone and is only read when evaluated, so it is kept; the evaluation is still OmegaConf's own,
against the job's config. ``resolve_in_place`` follows ``omegaconf._impl._resolve`` (OmegaConf
2.3) step for step; tests/test_compose.py checks it gives what ``OmegaConf.resolve`` gives on the
compositions of every preset, metric, experiment and protocol.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=4096)
def _parse_tree(text: str) -> Any:
    from omegaconf.grammar_parser import parse

    return parse(text)


def _dereferenced(node: Any) -> Any:
    """``node._dereference_node()``, from the kept parse tree of its text."""
    from omegaconf._utils import _get_value
    from omegaconf.errors import InterpolationResolutionError

    parent = node._get_parent_container()
    if parent is None:
        raise InterpolationResolutionError("Cannot resolve interpolation for a node without a parent")
    return parent._resolve_interpolation_from_parse_tree(
        parent=parent, key=node._key(), value=node, parse_tree=_parse_tree(_get_value(node)),
        throw_on_resolution_failure=True, memo=None)


def resolve_in_place(cfg: Any) -> None:
    """``OmegaConf.resolve(cfg)``."""
    from omegaconf import OmegaConf

    if not OmegaConf.is_config(cfg):
        raise ValueError(f"Invalid config type ({type(cfg).__name__}), expected an OmegaConf Container")
    _resolve(cfg)


def _resolve(cfg: Any) -> None:
    from omegaconf import MISSING, DictConfig, ListConfig
    from omegaconf.errors import InterpolationToMissingValueError

    if cfg._is_interpolation():
        try:
            resolved = _dereferenced(cfg)
        except InterpolationToMissingValueError:
            cfg._set_value(MISSING)
        else:
            cfg._set_value(resolved._value())
    if isinstance(cfg, DictConfig):
        for key in cfg.keys():
            _resolve_child(cfg, key)
    elif isinstance(cfg, ListConfig):
        for index in range(len(cfg)):
            _resolve_child(cfg, index)


def _resolve_child(cfg: Any, key: Any) -> None:
    from omegaconf import MISSING, Container, ValueNode
    from omegaconf._utils import _get_value
    from omegaconf.errors import InterpolationToMissingValueError

    node = cfg._get_child(key)
    if not node._is_interpolation():
        _resolve(node)
        return
    try:
        resolved = _dereferenced(node)
    except InterpolationToMissingValueError:
        node._set_value(MISSING)
        return
    if isinstance(resolved, Container):
        _resolve(resolved)
    if isinstance(resolved, Container) and isinstance(node, ValueNode):
        cfg[key] = resolved
    else:
        node._set_value(_get_value(resolved))
