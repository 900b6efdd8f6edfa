"""Display names and units for metric columns, config keys and config values.

Resolution order for a name: the user's overrides (``--labels FILE.yaml`` or ``labels=``), then
what the runs declare in ``run.json`` (each metric column's ``label`` and ``unit``), then a
built-in map of evalrun's own keys, then the key with underscores as spaces. File names and CSV
columns keep the raw keys; only what a reader sees (headers, captions, axes) uses these.

An overrides file maps a key to a label, or to ``{label, unit, values}``::

    clip_score: CLIP score (ViT-B/16)
    sample_seconds_per_image: {label: Time per image, unit: s}
    model: {label: Model, values: {sd15: SD 1.5, sd21: SD 2.1}}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from evalrun.errors import EvalrunError, first_line
from evalrun.report.sweep import value_text

# Fallbacks for keys and columns evalrun writes; runs' own declarations win over these.
BUILTIN: dict[str, tuple[str, str | None]] = {
    "model": ("Model", None), "model_path": ("Model path", None), "model_revision": ("Revision", None),
    "model_variant": ("Weights variant", None),
    "pipeline": ("Pipeline", None), "task": ("Task", None), "scheduler": ("Scheduler", None),
    "scheduler_class": ("Scheduler class", None), "scheduler_kwargs": ("Scheduler options", None),
    "steps": ("Steps", None), "guidance_scale": ("Guidance", None), "image_guidance_scale": ("Image guidance", None),
    "strength": ("Strength", None), "seed": ("Seed", None), "height": ("Height", "px"), "width": ("Width", "px"),
    "num_images_per_prompt": ("Images per prompt", None), "batch_size": ("Batch size", None),
    "prompts": ("Prompts", None), "dtype": ("Dtype", None), "device": ("Device", None),
    "category": ("Category", None), "challenge": ("Challenge", None),
    "clip_score": ("CLIP score", None), "fid": ("FID", None), "kid_mean": ("KID", None), "kid_std": ("KID std", None),
    "is_mean": ("IS", None), "is_std": ("IS std", None), "cmmd": ("CMMD", None), "fd_dinov2": ("FD-DINOv2", None),
    "clip_directional": ("CLIP directional similarity", None), "clip_image_similarity": ("CLIP image similarity", None),
    "pick_score": ("PickScore", None), "nfe": ("NFE", None), "sample_seconds_per_image": ("Seconds per image", "s"),
    "peak_memory_gib": ("Peak memory", "GiB"),
}
_ENTRY_KEYS = {"label", "unit", "values"}
log = logging.getLogger(__name__)


def _humanize(key: str) -> str:
    if "." in key:  # a metric setting (clip_score.clip_model): the raw key says the most
        return key
    text = key.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else key


@dataclass
class Labels:
    """Display text for keys and values; ``declared`` is the runs' ``columns`` map from ``run.json``."""

    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _entry(self, key: str) -> dict[str, Any]:
        return self.overrides.get(key, {})

    def name(self, key: str) -> str:
        """The label of ``key`` without its unit: ``image_guidance_scale`` -> ``Image guidance``."""
        for source in (self._entry(key), self.declared.get(key, {})):
            if source.get("label"):
                return str(source["label"])
        return BUILTIN[key][0] if key in BUILTIN else _humanize(key)

    def unit(self, key: str) -> str | None:
        entry = self._entry(key)
        if "unit" in entry:  # an override may also remove a unit (unit: null)
            return entry["unit"] or None
        if key in self.declared and "unit" in self.declared[key]:
            return self.declared[key]["unit"] or (BUILTIN.get(key, (None, None))[1])
        return BUILTIN.get(key, (None, None))[1]

    def __call__(self, key: str) -> str:
        """Label with its unit: ``Seconds per image (s)``."""
        unit = self.unit(key)
        return f"{self.name(key)} ({unit})" if unit else self.name(key)

    def value(self, key: str, value: Any) -> str:
        """A config value as shown: the override for it, else ``value_text`` (``2`` not ``2.0``)."""
        text = value_text(value)
        values = self._entry(key).get("values") or {}
        return str(values.get(text, values.get(str(value), text)))


def parse_overrides(data: Any, where: str = "labels") -> dict[str, dict[str, Any]]:
    """Validate an overrides mapping (see the module doc); errors name the bad entry."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise EvalrunError(f"{where}: expected a mapping of key -> label or {{label, unit, values}}, "
                           f"got {type(data).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for key, entry in data.items():
        if isinstance(entry, (str, int, float)):
            out[str(key)] = {"label": str(entry)}
            continue
        if not isinstance(entry, Mapping) or not set(entry) <= _ENTRY_KEYS:
            extra = sorted(set(entry) - _ENTRY_KEYS) if isinstance(entry, Mapping) else type(entry).__name__
            raise EvalrunError(f"{where}: entry {key!r} must be a label or a mapping with keys "
                               f"{', '.join(sorted(_ENTRY_KEYS))} (got {extra})")
        for part in ("label", "unit"):  # a list or a number here would print as "3 (['x'])"
            if entry.get(part) is not None and not isinstance(entry[part], str):
                raise EvalrunError(f"{where}: {key}.{part} must be text, got {type(entry[part]).__name__} "
                                   f"{entry[part]!r}; write it as a string (quoted if it looks like a number)")
        values = entry.get("values") or {}
        if not isinstance(values, Mapping):
            raise EvalrunError(f"{where}: {key}.values must map config values to display text")
        out[str(key)] = {**{k: entry[k] for k in ("label", "unit") if k in entry},
                         "values": {value_text(v) if not isinstance(v, str) else v: str(t) for v, t in values.items()}}
    return out


def load_labels(source: Path | str | Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Overrides from a YAML file path or a mapping (None: no overrides)."""
    if source is None or isinstance(source, Mapping):
        return parse_overrides(source)
    import yaml

    path = Path(source)
    if path.is_dir():
        raise EvalrunError(f"labels file {path} is a folder, not a YAML file; give --labels the file itself")
    if not path.is_file():
        raise EvalrunError(f"labels file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise EvalrunError(f"labels file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except yaml.YAMLError as exc:  # PyYAML's message spans lines (context, a copy of the line, a caret)
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or first_line(exc)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise EvalrunError(f"labels file {path} is not valid YAML: {problem}{where}") from None
    return parse_overrides(data, where=f"labels file {path}")


def check_overrides(overrides: Mapping[str, Mapping[str, Any]], known: Iterable[str],
                    values_of: Callable[[str], Iterable[Any] | None]) -> None:
    """Warn (not refuse: one labels file may serve several sweeps) about override keys that name no
    column and values that no run has, with the nearest name: a typo would otherwise go unseen.
    ``values_of(key)``: the key's values in these runs, None when there is nothing to check them against."""
    known = sorted(set(known) | set(BUILTIN))
    for key, entry in overrides.items():
        if key not in known:
            log.warning("labels: %r names no column of these runs and is unused%s", key, _nearest(key, known))
            continue
        values = entry.get("values") or {}
        found = values_of(key) if values else None
        if found is None:
            continue
        texts = sorted({value_text(v) for v in found} | {str(v) for v in found})
        for value in values:
            if value not in texts:
                log.warning("labels: %s has no value %r in these runs%s", key, value, _nearest(value, texts))


def _nearest(name: str, valid: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, valid, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
