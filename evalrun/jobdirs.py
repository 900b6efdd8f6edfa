"""Sweep job directory names: readable, stable across re-runs, and unique per configuration.

A job dir is named by its overrides (so re-running a sweep into the same directory finds its
finished jobs; also when it sweeps fewer or other keys, since a job dir is found by its hash), made
safe for file systems, and always ends in a short hash of the exact override string: two
configurations whose overrides differ only in characters that had to be replaced
(``prompts.path=/p/a.txt`` vs ``prompts.path=/p_a.txt``) never share a directory.
Long names keep the keys the sweep varies readable and shorten the constant ones.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MAX_LEN = 120


def split_overrides(text: str) -> list[str]:
    """``a=1,b=[x,y],c='p,q'`` -> ``["a=1", "b=[x,y]", "c='p,q'"]`` (commas inside brackets/quotes kept)."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p]


def swept_keys(sweep_dir: str | None) -> set[str]:
    """Keys the sweep varies, read from the sweep's ``multirun.yaml`` (comma lists and sweeper params)."""
    if not sweep_dir:
        return set()
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.exists():
        return set()
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(path)
        keys = set((OmegaConf.select(cfg, "hydra.sweeper.params") or {}).keys())
        for item in OmegaConf.select(cfg, "hydra.overrides.task") or []:
            key, _, value = str(item).partition("=")
            if len(split_overrides(value)) > 1 or value.startswith(("range(", "choice(", "interval(", "glob(")):
                keys.add(key.lstrip("+~"))
        return keys
    except Exception:  # a naming aid only: never fail a job over it
        return set()


def _safe(text: str) -> str:
    return re.sub(r"[/\\:*?\"<>|\s]+", "_", text).strip("._")


def _shorten(pair: str, limit: int = 40) -> str:
    """``key=long value`` -> ``key=...tail`` (the end of a path says more than its start)."""
    key, sep, value = pair.partition("=")
    return pair if len(value) <= limit else f"{key}{sep}~{value[-limit:]}"


def job_dirname(overrides: str, sweep_dir: str | None = None, varying: set[str] | None = None) -> str:
    """The job dir name for ``hydra.job.override_dirname`` (see module docstring); ``varying``: the swept
    keys, when known (else read from the sweep's multirun.yaml)."""
    digest = hashlib.sha256(overrides.encode()).hexdigest()[:8]
    if sweep_dir and Path(sweep_dir).is_dir():
        # The same job from an earlier sweep into this directory, whose name put other keys first (it
        # varied others): its finished run is this one's, so the job goes back there.
        earlier = sorted(p.name for p in Path(sweep_dir).glob(f"*-{digest}") if p.is_dir())
        if earlier:
            return earlier[0]
    pairs = split_overrides(overrides)
    varying = swept_keys(sweep_dir) if varying is None else varying
    ordered = [p for p in pairs if p.split("=", 1)[0].lstrip("+~") in varying] + \
              [p for p in pairs if p.split("=", 1)[0].lstrip("+~") not in varying]
    name = _safe(",".join(ordered))
    if len(name) > MAX_LEN:
        name = _safe(",".join(p if p.split("=", 1)[0].lstrip("+~") in varying else _shorten(p) for p in ordered))
    name = _cut(name, MAX_LEN).rstrip("._,") or "run"
    return f"{name}-{digest}"


def _cut(name: str, limit: int) -> str:
    """At most ``limit`` characters and ``limit`` UTF-8 bytes: file systems cap a name at 255 bytes, and a
    Chinese negative prompt is three bytes a character (a sweep over one stopped with "File name too long")."""
    name = name[:limit]
    while len(name.encode("utf-8")) > limit:
        name = name[:-1]
    return name
