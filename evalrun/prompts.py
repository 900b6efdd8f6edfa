"""Prompt sets -> records: ``{"prompt_id", "prompt", "category", "challenge", ...}``.

``prompt_id`` is the row's position in its source before any filtering, so the same
prompt keeps the same id (and hence the same noise) whatever filters or limits a run uses.
Category and challenge travel with each prompt into every results file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from evalrun.errors import ConfigError, EvalrunError

log = logging.getLogger(__name__)


def _column(frame: pd.DataFrame, *names: str, required: bool = True) -> str | None:
    """First column whose lower-cased name is in ``names``."""
    lower = {str(c).lower(): c for c in frame.columns}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    if required:
        raise ConfigError(f"no {names[0]!r} column among {list(frame.columns)}; set prompts.prompt_column")
    return None


def _frame_to_records(frame: pd.DataFrame, prompt_col: str) -> list[dict[str, Any]]:
    cat = _column(frame, "category", required=False)
    chal = _column(frame, "challenge", required=False)
    records = []
    for i, values in enumerate(frame.to_dict("records")):
        records.append({
            "prompt_id": i,
            "prompt": str(values[prompt_col]).strip(),
            "category": None if cat is None or pd.isna(values[cat]) else str(values[cat]),
            "challenge": None if chal is None or pd.isna(values[chal]) else str(values[chal]),
        })
    return records


def read_table(path: str | Path) -> pd.DataFrame:
    """CSV, TSV or JSONL into a DataFrame (local files only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"prompts.path={str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])
    if suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    if suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise ConfigError(f"prompts.path={str(path)!r}: use .txt, .csv, .tsv or .jsonl")


def load_hub_dataset(dataset: str, split: str, hint: str):
    """``datasets.load_dataset`` with an offline error that says how to use a local copy."""
    import datasets

    try:
        return datasets.load_dataset(dataset, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        raise EvalrunError(f"could not load dataset {dataset!r} split {split!r} "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). {hint}") from None


def _hub_frame(cfg: DictConfig, hint: str) -> pd.DataFrame:
    return load_hub_dataset(cfg.dataset, cfg.split, hint).to_pandas()


# ----------------------------------------------------------------------------- sources
def _inline(cfg: DictConfig) -> list[dict[str, Any]]:
    return [{"prompt_id": i, "prompt": str(p), "category": None, "challenge": None} for i, p in enumerate(cfg.texts)]


def _parti(cfg: DictConfig) -> list[dict[str, Any]]:
    hint = "Offline? Get PartiPrompts.tsv (google-research/parti) and set prompts.path=/path/PartiPrompts.tsv"
    frame = read_table(cfg.path) if cfg.path else _hub_frame(cfg, hint)
    return _frame_to_records(frame, _column(frame, "Prompt"))


def _drawbench(cfg: DictConfig) -> list[dict[str, Any]]:
    hint = "Offline? Save DrawBench as CSV/TSV (columns Prompts, Category) and set prompts.path=FILE"
    frame = read_table(cfg.path) if cfg.path else _hub_frame(cfg, hint)
    return _frame_to_records(frame, _column(frame, "Prompts", "Prompt", "text"))


def _file(cfg: DictConfig) -> list[dict[str, Any]]:
    path = Path(str(cfg.path)).expanduser()
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise ConfigError(f"prompts.path={str(path)!r} does not exist")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        return [{"prompt_id": i, "prompt": p, "category": None, "challenge": None} for i, p in enumerate(lines) if p]
    frame = read_table(path)
    return _frame_to_records(frame, _column(frame, cfg.get("prompt_column") or "prompt", "prompt", "prompts", "text"))


SOURCES: dict[str, Callable[[DictConfig], list[dict[str, Any]]]] = {
    "inline": _inline, "parti": _parti, "drawbench": _drawbench, "file": _file,
}


def register_source(name: str, loader: Callable[[DictConfig], list[dict[str, Any]]]) -> None:
    """Let task modules add prompt sources (edit datasets, class labels)."""
    SOURCES[name] = loader


# ----------------------------------------------------------------------------- filters
def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _filter(records: list[dict[str, Any]], key: str, wanted: list[str] | None) -> list[dict[str, Any]]:
    if wanted is None:
        return records
    available = sorted({r[key] for r in records if r.get(key)})
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise ConfigError(f"prompts.{key}: {unknown} not in this prompt set; valid: {', '.join(available) or '(none)'}")
    return [r for r in records if r.get(key) in wanted]


def load_prompts(cfg: DictConfig) -> list[dict[str, Any]]:
    """Load, filter (category, challenge), shuffle (seeded) and limit a prompt set."""
    source = cfg.get("source")
    if source not in SOURCES:
        raise ConfigError(f"prompts.source={source!r} is not valid; use one of {', '.join(sorted(SOURCES))}")
    records = SOURCES[source](cfg)
    records = _filter(records, "category", _as_list(cfg.get("category")))
    records = _filter(records, "challenge", _as_list(cfg.get("challenge")))
    if cfg.get("shuffle"):
        order = np.random.default_rng(int(cfg.get("shuffle_seed") or 0)).permutation(len(records))
        records = [records[i] for i in order]
    limit = cfg.get("limit")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"prompts.limit must be a positive integer or null, got {limit!r}")
        records = records[:limit]
    if not records:
        raise ConfigError(f"prompt set {cfg.get('name')!r} is empty after filtering")
    log.info("prompt set %s: %d prompts", cfg.get("name"), len(records))
    return records
