"""Prompt sets -> records: ``{"prompt_id", "prompt", "category", "challenge", ...}``.

``prompt_id`` is the row's position in its source before any filtering, so the same
prompt keeps the same id (and hence the same noise) whatever filters or limits a run uses.
Category and challenge travel with each prompt into every results file.

Sources are a plain registry of "module:function" names (edit sets and ImageNet classes
live with their tasks), so composing any ``conf/prompts/*.yaml`` works whatever a process
imported before.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from evalrun.errors import ConfigError, EvalrunError, true_or_false
from evalrun.table_files import check_file, read_table, read_text, text_lines

log = logging.getLogger(__name__)

SOURCES: dict[str, str] = {
    "inline": "evalrun.prompts:_inline",
    "parti": "evalrun.prompts:_parti",
    "drawbench": "evalrun.prompts:_drawbench",
    "file": "evalrun.prompts:_file",
    "classes": "evalrun.tasks.class2img:class_records",
    "edit_dataset": "evalrun.tasks.edit_data:load_edit_records",
}


# Columns a prompt file may carry that look like per-row generation settings, which evalrun does not read.
PER_ROW_KNOBS = {"negative_prompt", "negative", "seed", "steps", "num_inference_steps", "guidance", "guidance_scale",
                 "cfg", "height", "width"}


def is_missing(value: Any) -> bool:
    """None, NaN or an empty/blank string (an empty CSV cell)."""
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _prompt_column(frame, cfg: Any, default: str, *fallbacks: str) -> str:
    """The column ``prompts.prompt_column`` names. Only the set's own default falls back to the usual
    spellings: a column the user named and the file lacks is an error, never another column's prompts."""
    wanted = str(cfg.get("prompt_column") or default)
    if wanted.lower() != default.lower():
        found = _column(frame, wanted, required=False)
        if found is None:
            raise ConfigError(f"prompts.prompt_column={wanted!r} is not a column of the prompts (columns: "
                              f"{', '.join(map(str, frame.columns))}); set it to the column with the prompts")
        return found
    return _column(frame, wanted, *fallbacks)  # as spelt first: prompt_column=Prompt beside a "prompt"


def _column(frame, *names: str, key: str = "prompts.prompt_column", required: bool = True) -> str | None:
    """First of ``names`` among the columns: spelt exactly, else in any case (the first such column)."""
    lower: dict[str, Any] = {}
    for c in frame.columns:
        lower.setdefault(str(c).lower(), c)
    for name in names:
        if name and name in frame.columns:
            return name
        if name and name.lower() in lower:
            return lower[name.lower()]
    if required:
        raise ConfigError(f"no {names[0]!r} column among {list(frame.columns)}; set {key} to the column with the prompts")
    return None


def _frame_to_records(frame, prompt_col: str, where: str) -> list[dict[str, Any]]:
    cat = _column(frame, "category", required=False)
    chal = _column(frame, "challenge", required=False)
    rows = frame.to_dict("records")
    empty = [i for i, values in enumerate(rows) if is_missing(values[prompt_col])]
    if empty:
        shown = ", ".join(str(i) for i in empty[:10]) + (", ..." if len(empty) > 10 else "")
        raise ConfigError(f"{where}: {len(empty)} empty prompt(s) in column {prompt_col!r} (data rows {shown}, "
                          f"counting from 0); fill or remove them")
    typed = [i for i, values in enumerate(rows) if not isinstance(values[prompt_col], str)]
    if typed:  # JSON's numbers, lists, objects and booleans: "['a', 'b']" or "True" ran as the prompt
        raise ConfigError(f"{where}: the prompt in data row {typed[0]} (counting from 0) is a "
                          f"{type(rows[typed[0]][prompt_col]).__name__}, not text; write each prompt as a string")
    knobs = [c for c in frame.columns if str(c).lower().replace(" ", "_") in PER_ROW_KNOBS]
    if knobs:
        log.warning("%s: column(s) %s are not read: a prompt file gives prompts, category and challenge; set "
                    "negative_prompt, seed, steps and guidance in the config (prompts.negative_prompt=, seed=...)",
                    where, ", ".join(map(str, knobs)))
    return [{"prompt_id": i, "prompt": str(values[prompt_col]),  # verbatim: a model's tokenizer may see a space
             "category": None if cat is None or is_missing(values[cat]) else str(values[cat]),
             "challenge": None if chal is None or is_missing(values[chal]) else str(values[chal])}
            for i, values in enumerate(rows)]


def load_hub_dataset(dataset: str, split: str, hint: str):
    """``datasets.load_dataset`` with an offline error that says how to use a local copy."""
    import datasets

    try:
        return datasets.load_dataset(dataset, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        raise EvalrunError(f"could not load dataset {dataset!r} split {split!r} "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). {hint}") from None


def local_path(cfg: Any) -> str | None:
    """A hub prompt set's local file: ``prompts.path`` if set, else the bundled sample under the smoke profile
    (``prompts.offline_sample``); None: the hub dataset."""
    return cfg.get("path") or (cfg.get("smoke_path") if cfg.get("offline_sample") else None)


def _table(cfg: Any, hint: str):
    """A hub prompt set's rows: from its local file (:func:`local_path`), else the hub dataset."""
    path = local_path(cfg)
    if path:
        from evalrun.paths import resolve_data_path

        return read_table(resolve_data_path(path), cfg.get("encoding") or "utf-8"), f"prompts.path={str(path)!r}"
    return load_hub_dataset(cfg.dataset, cfg.split, hint).to_pandas(), f"dataset {cfg.dataset!r}"


# ----------------------------------------------------------------------------- sources
def _inline(cfg: Any) -> list[dict[str, Any]]:
    texts = [cfg.texts] if isinstance(cfg.texts, str) else list(cfg.texts)  # 'a cat' is one prompt, not five
    empty = [i for i, p in enumerate(texts) if p is None or not str(p).strip()]
    if empty:
        raise ConfigError(f"prompts.texts has {len(empty)} empty prompt(s) (positions {empty[:10]}); fill or remove them")
    return [{"prompt_id": i, "prompt": str(p), "category": None, "challenge": None} for i, p in enumerate(texts)]


def _parti(cfg: Any) -> list[dict[str, Any]]:
    hint = "Offline? Get PartiPrompts.tsv (google-research/parti) and set prompts.path=/path/PartiPrompts.tsv"
    frame, where = _table(cfg, hint)
    return _frame_to_records(frame, _prompt_column(frame, cfg, "Prompt"), where)


def _drawbench(cfg: Any) -> list[dict[str, Any]]:
    hint = "Offline? Save DrawBench as CSV/TSV (columns Prompts, Category) and set prompts.path=FILE"
    frame, where = _table(cfg, hint)
    return _frame_to_records(frame, _prompt_column(frame, cfg, "Prompts", "Prompt", "text"), where)


def _file(cfg: Any) -> list[dict[str, Any]]:
    if cfg.get("path") in (None, "", "???"):
        raise ConfigError("prompts=file needs prompts.path=FILE (.txt one prompt per line, or .csv/.tsv/.jsonl)")
    path = Path(str(cfg.path)).expanduser()
    if path.suffix.lower() == ".txt":
        lines = text_lines(read_text(check_file(path), cfg.get("encoding") or "utf-8"))
        return [{"prompt_id": i, "prompt": p, "category": None, "challenge": None} for i, p in enumerate(lines)
                if p.strip()]  # a blank line is no prompt; a prompt is read verbatim
    if check_file(path).suffix.lower() not in (".csv", ".tsv", ".json", ".jsonl"):  # a folder is named as one first
        raise ConfigError(f"prompts.path={str(path)!r}: use .txt (one prompt per line), .csv, .tsv, .json or .jsonl")
    frame = read_table(path, cfg.get("encoding") or "utf-8")
    col = _prompt_column(frame, cfg, "prompt", "prompts", "text")
    return _frame_to_records(frame, col, f"prompts.path={str(path)!r}")


# ----------------------------------------------------------------------------- filters
def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    from omegaconf import OmegaConf

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


def validate_prompts(cfg: Any) -> None:
    """Static checks of the prompt config (no file is read)."""
    source = cfg.get("source")
    if source not in SOURCES:
        raise ConfigError(f"prompts.source={source!r} is not valid; use one of {', '.join(sorted(SOURCES))}")
    limit, seed = cfg.get("limit"), cfg.get("shuffle_seed")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"prompts.limit must be a positive integer or null, got {limit!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"prompts.shuffle_seed must be a non-negative integer, got {seed!r}")
    true_or_false("prompts.shuffle", cfg.get("shuffle"))


def load_prompts(cfg: Any) -> list[dict[str, Any]]:
    """Load, filter (category, challenge), shuffle (seeded) and limit a prompt set."""
    validate_prompts(cfg)
    module, func = SOURCES[cfg.source].split(":")
    records = getattr(importlib.import_module(module), func)(cfg)
    if not records:
        where = f" ({cfg.get('path')})" if cfg.get("path") else ""
        raise ConfigError(f"prompt set {cfg.get('name')!r}{where} is empty: it holds no prompts")
    records = _filter(records, "category", _as_list(cfg.get("category")))
    records = _filter(records, "challenge", _as_list(cfg.get("challenge")))
    if cfg.get("shuffle"):
        order = np.random.default_rng(int(cfg.get("shuffle_seed") or 0)).permutation(len(records))
        records = [records[i] for i in order]
    if cfg.get("limit") is not None:
        records = records[:cfg.limit]
    if not records:
        filters = {k: cfg.get(k) for k in ("category", "challenge") if cfg.get(k) is not None}
        raise ConfigError(f"prompt set {cfg.get('name')!r} is empty after filtering "
                          f"({', '.join(f'prompts.{k}={v}' for k, v in filters.items())}); check the filter's values")
    log.info("prompt set %s: %d prompts", cfg.get("name"), len(records))
    return records
