"""One run as numbered steps: validate -> records -> classes -> metrics -> generate and score -> write.

Each step calls small helpers; the pipeline is loaded only if some image has to be sampled
(a re-run that finds its images in the store, or a run that adds a metric, loads none).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from evalrun.config import Plan, check_image_count, resolve_device, resolve_dtype, to_plain, validate, validate_classes
from evalrun.console import Phase, quiet_libraries
from evalrun.keys import generation_key, run_key
from evalrun.results import RUN_FILE, finished_run, run_lock
from evalrun.version import __version__

log = logging.getLogger(__name__)


class LazyPipeline:
    """The run's pipeline, loaded (and given the run's scheduler) on first use only."""

    def __init__(self, cfg: Any, pipeline_cls: type, device, dtype) -> None:
        self.cfg, self.cls, self.device, self.dtype, self.pipe = cfg, pipeline_cls, device, dtype, None

    def get(self):
        if self.pipe is None:
            from evalrun.pipelines import load_pipeline, set_scheduler

            with Phase("load pipeline"):
                self.pipe = load_pipeline(self.cfg.model, self.device, self.dtype, self.cfg)  # cfg: offload, vae_tiling
            self.scheduler_config = set_scheduler(self.pipe, self.cfg.scheduler)
        return self.pipe


def config_columns(cfg: Any, task: Any, params: dict[str, Any], scheduler_config: dict[str, Any], device, dtype) -> dict:
    """The values that define a run, as flat result columns (seed included)."""
    import json

    cols: dict[str, Any] = {
        "model": cfg.model.name, "model_path": str(cfg.model.path), "model_revision": cfg.model.revision,
        "pipeline": cfg.model.pipeline, "task": task.name, "scheduler": cfg.scheduler.name,
        # The class that ran, always (``scheduler=default`` is the checkpoint's own class).
        "scheduler_class": scheduler_config["class"],
        "scheduler_kwargs": json.dumps(to_plain(cfg.scheduler.kwargs), sort_keys=True, default=str),
    }
    for key in task.column_keys(cfg):
        if cfg.get(key) is not None:
            cols[key] = params.get(key, to_plain(cfg[key]))
    if task.prompt_sources:  # unconditional runs have no prompt set
        prompts = cfg.prompts
        filters = ("category", "challenge", "limit", "shuffle", "shuffle_seed", "words", "random", "random_seed", "all")
        cols["prompts"] = prompts.name
        cols["prompts_source"] = str(prompts.get("path") or prompts.get("dataset") or prompts.source)
        cols["prompts_filter"] = json.dumps({k: to_plain(prompts.get(k)) for k in filters if k in prompts},
                                            sort_keys=True, default=str)
    cols.update(task.extra_columns(cfg))  # negative prompt, guidance meaning, call kwargs (tasks/base.py)
    cols.update({"dtype": str(dtype).replace("torch.", ""), "device": device.type})
    return cols


def run(cfg: Any, run_dir: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    quiet_libraries()
    # 1. Validate everything cheap before anything heavy is imported. Interpolations are resolved
    #    once here: re-resolving them on every access cost more than the rest of the bookkeeping.
    cfg = OmegaConf.create(to_plain(cfg))
    plan = validate(cfg)
    if cfg.get("paths") and cfg.paths.get("cache_dir"):
        os.environ["EVALRUN_CACHE"] = str(Path(str(cfg.paths.cache_dir)).expanduser())
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    key = run_key(cfg, __version__, device, dtype)
    with run_lock(run_dir):
        if (done := finished_run(run_dir, key)) is not None:
            log.info("run in %s is already complete; reusing it (delete run.json to recompute)", run_dir)
            return done
        return _compute(cfg, plan, run_dir, key, device, dtype)


def _compute(cfg: Any, plan: Plan, run_dir: Path, key: str, device, dtype) -> dict[str, Any]:
    from evalrun.images import ImageStore, clean_partial_files
    from evalrun.jobs import image_jobs
    from evalrun.metrics.features.store import FeatureStore
    from evalrun.paths import cache_dir
    from evalrun.pipelines import build_scheduler, check_scheduler, checkpoint_scheduler, model_identity
    from evalrun.scoring import StreamScorer

    t0 = time.perf_counter()
    task, metrics = plan.task, plan.metrics
    clean_partial_files(run_dir)
    clean_partial_files(run_dir / "images")
    # 2. Records (a bad prompt file fails here, before any model loads) and the image count.
    records = task.load_records(cfg)
    per_record = task.images_per_record(cfg)
    check_image_count(metrics, len(records) * per_record)
    # 3. Pipeline class, knobs and scheduler, checked from the checkpoint's files (no weights load).
    pipeline_cls = validate_classes(cfg, task)
    scheduler, scheduler_config = build_scheduler(checkpoint_scheduler(cfg.model), cfg.scheduler)
    check_scheduler(pipeline_cls, scheduler, int(cfg.steps))
    model = model_identity(cfg.model)
    params = task.params(cfg)
    # 4. Metrics: their models and reference features load before the pipeline, so a missing
    #    weights file fails in seconds, not after the checkpoint has sampled.
    store = FeatureStore(cache_dir())
    with Phase("load metrics", total=len(metrics), unit="metrics") if metrics else _nothing():
        for metric in metrics.values():
            metric.context.device, metric.context.store = device, store
            metric.load()
    # 5. Records finished with the pipeline (class words -> label ids), then one job per image.
    pipeline = LazyPipeline(cfg, pipeline_cls, device, dtype)
    records = task.prepare(pipeline, records, cfg)
    jobs = image_jobs(records, per_record, int(cfg.seed))
    t_load = time.perf_counter()
    # 6. Generate (or reuse) and score, streamed: each chunk is scored as soon as it exists.
    from evalrun.generate import ImageStream

    gen_key = generation_key(cfg, params, model, scheduler_config, dtype, device)
    image_store = ImageStore(store_root(cfg))
    stream = ImageStream(jobs, run_dir / "images", gen_key, image_store, int(cfg.batch_size))
    scorer = StreamScorer(metrics, store, task.grid(cfg, jobs), int(cfg.seed))
    with Phase("generate and score", total=len(jobs)) as phase:
        for produced in stream.run(pipeline.get, task, params, progress=phase.advance):
            scorer.add(produced)
        results = scorer.finish()
    t_done = time.perf_counter()
    # 7. Write images.csv, per_image.csv, metrics.csv, grid.png, then run.json last (it marks completion).
    from evalrun.outputs import write_run

    return write_run(run_dir, cfg, plan, config_columns(cfg, task, params, scheduler_config, device, dtype), results,
                     scorer, stream, store, model=model, scheduler_config=scheduler_config, device=device,
                     run_key=key, generation_key=gen_key,
                     seconds={"load": round(t_load - t0, 3), "generate_and_score": round(t_done - t_load, 3)})


def store_root(cfg: Any):
    """The image store's folder: ``paths.image_store``, by default ``<cache>/images``; ``none`` turns it off."""
    from evalrun.paths import cache_dir

    configured = cfg.paths.get("image_store") if cfg.get("paths") else None
    if configured in (False, "none", "off"):
        return None
    return Path(str(configured)).expanduser() if configured else cache_dir() / "images"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None
