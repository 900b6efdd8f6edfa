"""The keys the packaged configs define, read from the YAML files themselves (no Hydra composition): what
:mod:`evalrun.override_keys` and :mod:`evalrun.added_keys` check overrides against."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from evalrun.hydra_flags import groups
from evalrun.paths import CONF_DIR

# Groups whose options each name themselves in a field (prompts.name, reference.kind) and read only their own keys.
OPTION_FIELD = {"prompts": "name", "reference": "kind"}


def yaml_mapping(path: Path) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the model presets in ~7 ms, not ~40
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


@functools.lru_cache(maxsize=None)
def config_yaml() -> tuple[dict, str]:
    path = CONF_DIR / "config.yaml"
    return yaml_mapping(path), path.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def _global_files() -> tuple[dict, ...]:
    """The option files that write from the root (experiments, protocols, debug profiles)."""
    return tuple(yaml_mapping(f) for f in sorted(CONF_DIR.glob("*/*.yaml")) if "# @package _global_" in f.read_text())


@functools.lru_cache(maxsize=None)
def top_level_keys(everywhere: bool = True) -> frozenset[str]:
    top, _ = config_yaml()
    keys = set(top) | groups()
    if everywhere:
        keys |= {k for found in _global_files() for k in found}
    return frozenset(keys - {"defaults", "hydra"})


@functools.lru_cache(maxsize=None)  # asked twice per unknown key: is it known, then which is nearest
def group_keys(group: str, everywhere: bool = True) -> frozenset[str]:
    """Keys the packaged configs define under ``group`` (``everywhere=False``: only what config.yaml reads or sets)."""
    top, text = config_yaml()
    keys = set(re.findall(rf"oc\.select:{re.escape(group)}\.(\w+)", text)) | set(top.get(group) or {})
    if everywhere:
        keys |= set().union(*(yaml_mapping(f) for f in (CONF_DIR / group).glob("*.yaml")))
        keys |= _global_group_keys(group)
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def _global_group_keys(group: str) -> frozenset[str]:
    """Keys the ``@package _global_`` files set under ``group`` (a protocol's prompts, debug=smoke's)."""
    return frozenset(k for found in _global_files() for k in (found.get(group) or {}))


def metric_keys(metric: str) -> set[str] | None:
    path = CONF_DIR / "metrics" / f"{metric}.yaml"
    return set(yaml_mapping(path).get(metric) or {}) if path.is_file() else None


def _option_keys(group: str, option: str) -> set[str]:
    """The keys one option file of ``group`` sets, with those of the same group's options it lists as defaults."""
    data = yaml_mapping(CONF_DIR / group / f"{option}.yaml")
    keys = set(data) - {"defaults"}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and (CONF_DIR / group / f"{entry}.yaml").is_file():
            keys |= _option_keys(group, entry)
    return keys


def not_read_by_option(group: str, option: str, name: str, override: str) -> str | None:
    """``prompts.path=my.txt`` with prompts=doc: a key other options of the group read and the chosen one does
    not (Hydra's suggested fix, ``+prompts.path=``, then ran the doc prompts and read no file)."""
    if group not in OPTION_FIELD or not (CONF_DIR / group / f"{option}.yaml").is_file():
        return None
    if name in _option_keys(group, option) | group_keys(group, everywhere=False) | _global_group_keys(group):
        return None
    readers = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if name in _option_keys(group, p.stem))
    if not readers:
        return None  # no option has it: the misspelling checks answer
    example = next((r for r in ("file", "folder") if r in readers), readers[0])  # your own file, the usual case
    return (f"{override}: {group}={option} does not read {group}.{name} ({group}={', '.join(readers)} "
            f"{'does' if len(readers) == 1 else 'do'}); choose one, e.g. {group}={example} {override.lstrip('+')}")
