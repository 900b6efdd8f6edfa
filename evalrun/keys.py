"""The two keys a run is known by.

- The **run key** says whether a finished run in this directory can be reused: the resolved
  config, evalrun's version, the resolved device and dtype, and the content identity of every
  local input (model weights, prompt files and the images beside them, reference images or
  statistics, metric weights). A file changed in place changes the key.
- The **generation key** says what determines the pixels (not the metrics): model identity,
  pipeline class, resolved scheduler config, task knobs, size, dtype, device type and the
  library versions that sample. Each image's own key adds its condition and generator seed
  (``generate.image_key``), so runs that differ only in metrics, prompt filters or seeds share
  every image they have in common.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalrun.hashing import file_sha256, file_stamp, local_identity, same_numbers, stable_hash
from evalrun.plugins import is_import_path, source_sha256


def _folder_listing(path: Path) -> str:
    """Cheap identity of a folder of many files (reference images): names and ``file_stamp``s."""
    entries = sorted((str(p.relative_to(path)), *file_stamp(p.stat())) for p in path.rglob("*") if p.is_file())
    return stable_hash(entries, length=32)


def _files_named(table: Path, encoding: str = "utf-8") -> str | None:
    """Every file a table names (relative to its own folder, ../, or absolute), by path and ``file_stamp``: an
    input image replaced in place must never be served stale. Only these: a listing of the table's folder
    walked everything beside it (a table in a project root walked its virtualenv) and changed with any
    output written there."""
    from evalrun.table_files import read_table

    try:
        frame = read_table(table, encoding)
    except Exception:  # noqa: BLE001 - the run's own read of the table reports what is wrong with it
        return None
    entries = set()
    for value in frame.to_numpy().ravel():
        if not isinstance(value, str) or not value.strip() or len(value) > 4096:
            continue
        path = Path(value).expanduser()
        try:
            path = (path if path.is_absolute() else table.parent / path).resolve()
            if path.is_file() and path != table.resolve():
                entries.add((str(path), *file_stamp(path.stat())))
        except (OSError, ValueError):
            continue
    return stable_hash(sorted(entries), length=32) if entries else None


def _path_identity(value: Any) -> Any:
    if not isinstance(value, str) or value in ("", "???") or value.startswith("evalrun/tiny-"):
        return None
    p = Path(value).expanduser()
    if p.is_file():
        return file_sha256(p)
    if p.is_dir():
        return local_identity(p) if (p / "model_index.json").exists() or (p / "config.json").exists() \
            else _folder_listing(p)
    return None


def input_identities(cfg: Any) -> dict[str, Any]:
    """Content identity of every local file or folder the config points at."""
    from evalrun.plain import to_plain

    out: dict[str, Any] = {"model": _path_identity(str(cfg.model.path))}
    model_path = Path(str(cfg.model.path)).expanduser()
    if cfg.model.get("task") == "images" and model_path.is_file():
        out["model_images"] = _files_named(model_path, cfg.model.get("encoding") or "utf-8")
    elif cfg.model.get("task") == "images" and model_path.name == "images" and (model_path.parent / "images.csv").is_file():
        out["model_records"] = file_sha256(model_path.parent / "images.csv")  # a run's images: prompts read from it
    prompts = cfg.get("prompts") or {}
    path = prompts.get("path") if prompts else None
    if path not in (None, "", "???"):
        from evalrun.paths import resolve_data_path

        table = resolve_data_path(str(path))
        out["prompts"] = _path_identity(str(table))
        if prompts.get("source") == "edit_dataset" and table.is_file():
            out["prompt_images"] = _files_named(table, prompts.get("encoding") or "utf-8")  # its input images
    reference = to_plain(cfg.get("reference")) or {}
    if reference.get("path"):
        out["reference"] = _path_identity(str(reference["path"]))
    if is_import_path(cfg.model.get("task")):  # a task of your own: its code
        out["model.task"] = source_sha256(str(cfg.model.task))
    from evalrun.metrics.registry import METRICS

    for name, settings in (to_plain(cfg.get("metrics")) or {}).items():
        out.update(_setting_identities(f"metrics.{name}", settings or {}))
        if not str(METRICS.get(name, "evalrun.")).startswith("evalrun."):  # a metric class of your own: its code
            out[f"metrics.{name}.code"] = source_sha256(METRICS[name])
    return {k: v for k, v in out.items() if v is not None}


def _setting_identities(prefix: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A metric's local inputs: weights files and folders (``*_path``, ``path`` inside its options, CLIP or
    preference model folders) by content, and the code of a backbone class of your own by its file."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_setting_identities(f"{prefix}.{key}", value))
        elif not isinstance(value, str):
            continue
        elif key.endswith("_path") or key in ("path", "clip_model", "model", "processor"):
            out[f"{prefix}.{key}"] = _path_identity(value)
        elif key == "feature_extractor_target" or (key == "feature_extractor" and is_import_path(value)):
            out[f"{prefix}.{key}"] = source_sha256(value)
    return out


def run_key(cfg: Any, version: str, device: Any, dtype: Any, plain: dict | None = None) -> str:
    """``plain``: ``cfg`` already resolved to plain values, if the caller has it."""
    from evalrun.plain import to_plain

    config = plain if plain is not None else to_plain(cfg)
    return stable_hash({"config": config, "evalrun": version, "device": str(device), "dtype": str(dtype),
                        "inputs": input_identities(cfg)})


def generation_key(cfg: Any, params: dict[str, Any], model: dict[str, Any], scheduler_config: dict[str, Any],
                   dtype: Any, device: Any, counts: tuple[str, ...] = ()) -> str:
    """Everything that changes the pixels of a run's images, but nothing per image and not the metrics.
    ``counts``: knobs that only say how many images a run makes (an unconditional run's ``num_images``):
    image i of a 10,000-image run is image i of a 50,000-image one."""
    from evalrun.results import library_versions

    versions = library_versions()
    knobs = {k: v for k, v in params.items() if k not in ("batch_size", *counts)}
    return stable_hash({
        "pipeline": cfg.model.pipeline, "model_path": str(cfg.model.path), "revision": cfg.model.revision,
        "variant": cfg.model.variant, "weights": model.get("weights_sha256"), "snapshot": model.get("snapshot"),
        "scheduler": same_numbers(scheduler_config), "knobs": same_numbers(knobs), "dtype": str(dtype), "device_type": getattr(device, "type", device),
        "versions": {k: versions.get(k) for k in ("torch", "diffusers", "transformers")},
        "options": {k: cfg.get(k) for k in ("offload", "vae_tiling", "vae_slicing", "compile", "channels_last",
                                            "attention", "tf32")
                    if cfg.get(k) not in (None, False, "none")},
        # A task of your own builds the pipeline's inputs (an inpainting mask): its code makes the pixels too.
        "task_code": source_sha256(str(cfg.model.task)) if is_import_path(cfg.model.get("task")) else None,
    }, length=32)
