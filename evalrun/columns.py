"""A run's result columns: the values that define its configuration (``metrics.csv``), which the summary
groups runs by and averages over seeds within. Two runs share a configuration only if every column
here is equal, so whatever changes the images or what they are scored against is a column.
"""

from __future__ import annotations

from typing import Any

from evalrun.hashing import same_numbers
from evalrun.plain import to_plain


def config_columns(cfg: Any, task: Any, params: dict[str, Any], scheduler_config: dict[str, Any], device, dtype) -> dict:
    """The values that define a run, as flat result columns (seed included)."""
    import json

    cols: dict[str, Any] = {
        "model": cfg.model.name, "model_path": str(cfg.model.path), "model_revision": cfg.model.revision,
        "pipeline": cfg.model.pipeline, "task": task.name,
    }
    if cfg.model.get("variant"):  # fp16 files beside the full ones: other weights (model_weights_sha256 hashes both)
        cols["model_variant"] = cfg.model.variant
    if task.generates:
        cols.update({"scheduler": cfg.scheduler.name,
                     # The class that ran, always (``scheduler=default`` is the checkpoint's own class).
                     "scheduler_class": scheduler_config["class"],
                     "scheduler_kwargs": json.dumps(same_numbers(to_plain(cfg.scheduler.kwargs)), sort_keys=True,
                                                    default=str)})  # shift=3 and shift=3.0: one configuration
    for key in task.column_keys(cfg):
        if cfg.get(key) is not None:
            cols[key] = params.get(key, to_plain(cfg[key]))
    from evalrun.acceleration import options

    cols.update(options(cfg))  # speed options, only when on
    if cfg.get("timing_warmup") is False:  # seconds then include the first call's compilation and allocation
        cols["timing_warmup"] = False
    if task.prompt_sources:  # unconditional runs have no prompt set
        prompts = cfg.prompts
        filters = ("category", "challenge", "limit", "shuffle", "shuffle_seed", "words", "random", "random_seed", "all",
                   "prompt_column", "encoding")
        cols["prompts"] = prompts.name
        cols["prompts_source"] = str(prompts.get("path") or prompts.get("dataset") or prompts.source)
        cols["prompts_filter"] = json.dumps({k: to_plain(prompts.get(k)) for k in filters if k in prompts},
                                            sort_keys=True, default=str)
    cols.update(task.extra_columns(cfg))  # negative prompt, guidance meaning, call kwargs (tasks/base.py)
    cols.update({"dtype": str(dtype).replace("torch.", ""), "device": device.type})
    return cols


def prompts_columns(task: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Which prompts ran, as a column: runs that read other prompts (another ``prompts.texts`` list, a file
    edited in place) are different configurations in the summary, never seeds of one. For edits, the
    captions and the input images' pixels too (an input replaced in place is another set); prompt ids
    where they are not positions, and class ids."""
    from evalrun.hashing import stable_hash

    if not task.prompt_sources:
        return {}
    return {"prompts_sha256": stable_hash([_record_identity(record, i) for i, record in enumerate(records)],
                                          length=16)}


def _record_identity(record: dict[str, Any], position: int) -> Any:
    """A record as its images depend on it: the prompt (an edit's captions and input pixels too), and its id
    where that is not its position (the id seeds the images: a row inserted at the top of a file, outside a
    category filter, moves every id) or a class id (two ImageNet classes share the word "crane")."""
    image = record.get("input_image")
    if image is None:
        prompt = record.get("prompt")
        if record.get("class_id") is not None or record.get("prompt_id", position) != position:
            return [prompt, record.get("prompt_id"), record.get("class_id")]
        return prompt
    from evalrun.images import pixel_hash

    pixels = pixel_hash(image.permute(1, 2, 0).numpy()) if hasattr(image, "permute") else str(image)
    edit = [record.get("prompt"), record.get("input_caption"), record.get("output_caption"), pixels]
    return edit if record.get("prompt_id", position) == position else [*edit, record.get("prompt_id")]


def scored_images_columns(task: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which images a scoring run read (``model=images``), as a column: its config is only the folder or table
    and a seed, so two scorings of other images at one path (a folder refilled, a table edited) were repeats of
    one configuration and the report kept the first. Each image's pixels, with what it is scored against (its
    prompt, captions, input image file); not the seed, so a seed sweep over one folder is one configuration."""
    from evalrun.hashing import file_sha256, stable_hash

    if task.generates:
        return {}
    keys = ("prompt", "category", "challenge", "input_caption", "output_caption")  # not the seed: a run's own
    return {"images_sha256": stable_hash([[r["image_id"], r["pixels"], *(r.get(k) for k in keys),
                                           file_sha256(r["input_path"]) if r.get("input_path") else None]
                                          for r in rows], length=16)}


def identity_columns(model: dict[str, Any]) -> dict[str, Any]:
    """The weights that ran, as a column: runs whose weights differ (a checkpoint changed in place) are
    different configurations in the summary, never averaged together."""
    from evalrun.hashing import stable_hash

    weights = model.get("weights_sha256")
    return {"model_weights_sha256": stable_hash(weights, length=16) if weights else None}
