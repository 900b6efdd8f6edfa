"""One run as numbered steps: validate -> prompts -> pipeline -> metrics -> generate -> score -> write."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm.auto import tqdm

from evalrun import __version__, classes
from evalrun.config import resolve_device, resolve_dtype, to_plain, validate
from evalrun.generate import ImageJob, generate, image_jobs, make_grid
from evalrun.metrics import ImageBatch, Metric, MetricContext, build_metric
from evalrun.pipelines import check_scheduler, load_pipeline, set_scheduler
from evalrun.prompts import load_prompts
from evalrun.results import (RUN_FILE, finished_run, library_versions, stable_hash, write_csv, write_json)
from evalrun.tiny import cache_dir

log = logging.getLogger(__name__)

# Top-level knobs that become result columns when the config has them (task-specific ones
# such as image_guidance_scale or strength appear only for the tasks that define them).
KNOBS = ("steps", "guidance_scale", "image_guidance_scale", "strength", "eta", "seed", "height", "width",
         "num_images_per_prompt", "batch_size", "num_images")
# Hooks that task modules register: finish records once the pipeline is loaded (e.g. map
# ImageNet class words to label ids with ``pipe.get_label_ids``), and draw a task's grid.
PREPARE_RECORDS: dict[str, Callable[[Any, list[dict[str, Any]], DictConfig], list[dict[str, Any]]]] = {
    "class2img": classes.prepare_class_records, "unconditional": classes.unconditional_records}
GRID_MAKERS: dict[str, Callable[[list[np.ndarray], list[ImageJob], DictConfig], Image.Image]] = {}
SCORE_BATCH = 64


def config_columns(cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The values that define a run, as flat result columns (seed included)."""
    prompts = cfg.prompts
    cols: dict[str, Any] = {
        "model": cfg.model.name, "model_path": str(cfg.model.path), "model_revision": cfg.model.revision,
        "pipeline": cfg.model.pipeline, "task": cfg.model.task, "scheduler": cfg.scheduler.name,
        "scheduler_class": cfg.scheduler.class_name or "default",
        "scheduler_kwargs": stable_json(to_plain(cfg.scheduler.kwargs)),
    }
    for knob in KNOBS:
        if cfg.get(knob) is not None:  # task-specific knobs are null for tasks without them
            cols[knob] = cfg[knob]
    if cfg.model.task != "unconditional":  # unconditional runs have no prompt set
        filters = ("category", "challenge", "limit", "shuffle", "shuffle_seed", "words", "random", "random_seed", "all")
        cols["prompts"] = prompts.name
        cols["prompts_source"] = str(prompts.get("path") or prompts.get("dataset") or prompts.source)
        cols["prompts_filter"] = stable_json({k: to_plain(prompts.get(k)) for k in filters if k in prompts})
    cols.update({"dtype": str(dtype).replace("torch.", ""), "device": device.type})
    return cols


def file_digest(path: Any) -> str | None:
    """sha256 of a local file's content (None for hub datasets and missing paths)."""
    import hashlib

    if not path or path == "???" or not Path(str(path)).expanduser().is_file():
        return None
    return hashlib.sha256(Path(str(path)).expanduser().read_bytes()).hexdigest()


def stable_json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _record_columns(record: dict[str, Any]) -> dict[str, Any]:
    """Scalar fields of a prompt record (tensors such as input images stay out of CSVs)."""
    return {k: v for k, v in record.items() if isinstance(v, (str, int, float, bool)) or v is None}


def score(metrics: dict[str, Metric], images: list[np.ndarray], records: list[dict[str, Any]]) -> None:
    """Feed uint8 images to every metric in batches (the same pixels as the saved PNGs)."""
    if not metrics:
        return
    for start in tqdm(range(0, len(images), SCORE_BATCH), desc="score", unit="batch"):
        chunk = np.stack(images[start:start + SCORE_BATCH])
        batch = ImageBatch(torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous(), records[start:start + SCORE_BATCH])
        for metric in metrics.values():
            metric.update(batch)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    # 1. Validate everything cheap before anything heavy loads. Interpolations are resolved
    #    once here: re-resolving them on every access cost more than the rest of the bookkeeping.
    cfg = OmegaConf.create(to_plain(cfg))
    validate(cfg)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    columns = config_columns(cfg, device, dtype)
    # What makes a finished run reusable: the config with device/dtype resolved ("auto" on a
    # GPU machine is not "auto" on a CPU one) and the content of a local prompt file.
    run_key = stable_hash({"config": to_plain(cfg), "evalrun": __version__, "device": str(device),
                           "dtype": str(dtype), "prompts_file": file_digest(cfg.prompts.get("path"))})
    if (done := finished_run(run_dir, run_key)) is not None:
        log.info("run in %s is already complete; reusing it (delete run.json to recompute)", run_dir)
        return done
    t0 = time.perf_counter()

    # 2. Prompts (a bad path or filter fails here, before the model loads). Unconditional
    #    models have none: their records are the num_images samples (step 3).
    records = load_prompts(cfg.prompts) if cfg.model.task != "unconditional" else []

    # 3. Metrics: their models (CLIP, Inception, reference statistics) load before the
    #    pipeline, so a missing weights file fails in seconds, not after the checkpoint loads.
    context = MetricContext(device=device, cache_dir=cache_dir(), reference=cfg.get("reference"), seed=int(cfg.seed))
    metric_cfgs = cfg.get("metrics") or {}
    metrics = {name: build_metric(name, metric_cfgs[name], context) for name in metric_cfgs}
    metric_columns = {f"{name}.{k}": v for name, m in metrics.items() for k, v in m.settings().items()}
    for metric in metrics.values():
        metric.prepare()

    # 4. Pipeline (cached across a sweep's jobs) and scheduler.
    pipe = load_pipeline(cfg.model, device, dtype)
    scheduler_config = set_scheduler(pipe, cfg.scheduler)
    check_scheduler(pipe, int(cfg.steps))
    if cfg.model.task in PREPARE_RECORDS:
        records = PREPARE_RECORDS[cfg.model.task](pipe, records, cfg)
    # Everything that changes the pixels (not batch size or device: one generator per image).
    generation_key = stable_hash({k: v for k, v in columns.items() if k not in ("batch_size", "device")}
                                 | {"scheduler_config": scheduler_config, "model": to_plain(cfg.model),
                                    "prompts": to_plain(cfg.prompts),
                                    "prompts_file": file_digest(cfg.prompts.get("path"))})
    columns.update(metric_columns)
    t_load = time.perf_counter()

    # 5. Generate (reusing images an interrupted run already wrote).
    n_images = 1 if cfg.model.task == "unconditional" else int(cfg.num_images_per_prompt)
    jobs = image_jobs(records, n_images, int(cfg.seed))
    params = {k: to_plain(cfg[k]) for k in KNOBS if cfg.get(k) is not None}
    images, flags = generate(pipe, cfg.model.task, jobs, params, run_dir / "images", int(cfg.batch_size), generation_key)
    t_gen = time.perf_counter()

    # 6. Score.
    job_records = [{**j.record, "seed": int(cfg.seed), "image_index": j.image_index} for j in jobs]
    score(metrics, images, job_records)
    results = {name: m.compute() for name, m in metrics.items()}
    t_score = time.perf_counter()

    # 7. Write images.csv, per_image.csv, metrics.csv, grid.png, then run.json last (it marks completion).
    rows = pd.DataFrame([{"image_id": j.image_id, "path": f"images/{j.image_id}.png", "prompt_index": j.prompt_index,
                          **_record_columns(j.record), "seed": int(cfg.seed), "image_index": j.image_index,
                          "generator_seed": j.generator_seed, "degenerate": flag} for j, flag in zip(jobs, flags)])
    write_csv(rows, run_dir / "images.csv")
    per_image = rows.copy()
    for result in results.values():
        for col, values in result.per_image.items():
            per_image[col] = values
    write_csv(per_image, run_dir / "per_image.csv")
    values = {k: v for r in results.values() for k, v in r.values.items()}
    summary = {**columns, **values, "n_images": len(images), "n_degenerate": sum(bool(f) for f in flags)}
    write_csv(pd.DataFrame([summary]), run_dir / "metrics.csv")
    if cfg.model.task in GRID_MAKERS:
        grid = GRID_MAKERS[cfg.model.task](images, jobs, cfg)
    else:
        grid = make_grid(images, n_images if n_images > 1 else min(8, len(images)), int(cfg.grid_max_images))
    grid.save(run_dir / "grid.png")
    record = {
        "status": "complete", "run_key": run_key, "generation_key": generation_key,
        "config_columns": list(columns), "metric_columns": list(values),
        "higher_is_better": {k: type(metrics[n]).higher_is_better for n, r in results.items() for k in r.values
                             if not k.endswith("_std")},
        "values": values,
        "provenance": {
            "model": to_plain(cfg.model), "smoke_model_random_weights": bool(cfg.model.get("smoke", False)),
            "scheduler_config": scheduler_config, "dtype": columns["dtype"], "device": str(device),
            "batch_size": int(cfg.batch_size), "n_images": len(images), "n_prompts": len(records),
            "image_format": "PNG (uint8, rounded as diffusers' numpy_to_pil); metrics score these pixels",
            "generator": "one CPU torch.Generator per image, seeded from (seed, prompt_id, image_index)",
            "metrics": {name: r.info for name, r in results.items()}, "versions": library_versions(),
            "seconds": {"load": round(t_load - t0, 3), "generate": round(t_gen - t_load, 3),
                        "score": round(t_score - t_gen, 3)},
        },
        "config": to_plain(cfg),
    }
    write_json(record, run_dir / RUN_FILE)
    log.info("run complete: %s -> %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}, run_dir)
    return record


import evalrun.edit  # noqa: E402,F401 - registers the edit task, its prompt sources and grid (last: it fills this module's hooks)
