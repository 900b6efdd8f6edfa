"""Provenance that differs between runs averaged together: library versions, device, scheduler
config, weights hashes.

Runs of one configuration (same config columns, any seed) are averaged into one table cell and
one ``summary.csv`` row. If they ran with different library versions, on different devices, with
a different resolved scheduler config or different weights files, the average mixes things the
config columns do not show. :func:`provenance_fields` picks those fields out of a run's
``run.json`` provenance as flat ``dotted.key -> text`` pairs; :func:`differing_fields` compares
runs; :func:`group_differences` does it per configuration. All three are pure (dicts in, dicts
out) so the report and ``evalrun.aggregate`` can share them; :func:`read_provenance` is the IO.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

ABSENT = "(absent)"
# Provenance entries compared, as paths into run.json's "provenance"; a "*" takes every key below.
FIELDS: tuple[str, ...] = (
    "versions.*",
    "environment.evalrun_git", "environment.device", "environment.gpu_name", "environment.cuda",
    "scheduler_config.*",
    "model_weights.weights_sha256.*",
    "metrics.*.feature_extractor_weights.*",
)

# Values compared by a normalised form: a job's GPU index ("cuda:1") is not a difference, its type is.
NORMALISE = {"environment.device": lambda v: v.split(":", 1)[0]}


def _flatten(value: Any, prefix: str) -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}"))
        return out
    if isinstance(value, (list, tuple)):
        return {prefix: json.dumps(value, sort_keys=True, default=str)}
    return {prefix: "null" if value is None else str(value)}


def _select(node: Any, parts: list[str], prefix: str) -> dict[str, str]:
    if not parts:
        return _flatten(node, prefix)
    if not isinstance(node, Mapping):
        return {}
    head, rest = parts[0], parts[1:]
    keys = list(node) if head == "*" else [head] if head in node else []
    out: dict[str, str] = {}
    for key in keys:
        out.update(_select(node[key], rest, f"{prefix}.{key}" if prefix else str(key)))
    return out


def provenance_fields(provenance: Mapping[str, Any], fields: Iterable[str] = FIELDS) -> dict[str, str]:
    """The compared entries of one run's provenance, flattened: ``{"versions.torch": "2.14.1",
    "scheduler_config.beta_end": "0.012", "model_weights.weights_sha256.unet": "e059...", ...}``;
    ``environment.device`` as its type (``cuda``, not ``cuda:1``)."""
    out: dict[str, str] = {}
    for path in fields:
        out.update(_select(provenance, path.split("."), ""))
    return {k: NORMALISE[k](v) if k in NORMALISE else v for k, v in out.items()}


def differing_fields(provenances: Mapping[str, Mapping[str, Any]],
                     fields: Iterable[str] = FIELDS) -> dict[str, dict[str, list[str]]]:
    """Fields whose value is not the same in every run: ``{field: {value: [run ids]}}``.

    ``provenances``: run id (e.g. run dir) -> that run's provenance. A field some runs lack counts
    as the value ``"(absent)"`` for them; a field no run has is not reported. Values and run ids
    keep the order they first appear in."""
    fields = tuple(fields)
    flat = {run: provenance_fields(p, fields) for run, p in provenances.items()}
    names = list(dict.fromkeys(name for values in flat.values() for name in values))
    out: dict[str, dict[str, list[str]]] = {}
    for name in names:
        by_value: dict[str, list[str]] = {}
        for run, values in flat.items():
            by_value.setdefault(values.get(name, ABSENT), []).append(run)
        if len(by_value) > 1:
            out[name] = by_value
    return out


def group_differences(groups: Mapping[Any, Mapping[str, Mapping[str, Any]]],
                      fields: Iterable[str] = FIELDS) -> dict[Any, dict[str, dict[str, list[str]]]]:
    """:func:`differing_fields` within each group (configuration label -> {run id: provenance});
    only groups with a difference are returned."""
    fields = tuple(fields)
    out = {}
    for label, provenances in groups.items():
        diff = differing_fields(provenances, fields)
        if diff:
            out[label] = diff
    return out


def describe(diff: Mapping[str, Mapping[str, list[str]]], max_fields: int = 8, width: int = 16) -> list[str]:
    """One line per differing field: ``versions.torch: 2.14.1 (2 runs) vs 2.13.0 (1 run)``; long values
    (hashes) shortened to ``width`` characters; at most ``max_fields`` lines plus a count of the rest."""
    lines = []
    for name, by_value in list(diff.items())[:max_fields]:
        parts = [f"{v if len(v) <= width else v[:width] + '…'} ({len(r)} run{'s' if len(r) != 1 else ''})"
                 for v, r in by_value.items()]
        lines.append(f"{name}: {' vs '.join(parts)}")
    if len(diff) > max_fields:
        lines.append(f"... and {len(diff) - max_fields} more field(s)")
    return lines


def read_provenance(run_dir: Path | str) -> dict[str, Any]:
    """The ``provenance`` of a run's ``run.json`` ({} when unreadable)."""
    try:
        return dict(json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8")).get("provenance") or {})
    except (OSError, ValueError):
        return {}
