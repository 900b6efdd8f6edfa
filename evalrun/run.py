"""One run as numbered steps: validate -> records -> classes -> metrics -> generate and score -> write.

Each step calls small helpers; the pipeline is loaded only if some image has to be sampled
(a re-run that finds its images in the store, or a run that adds a metric, loads none).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import evalrun.shards as shards
from evalrun.checked import Checked, checked_classes, checked_config, point_cache
from evalrun.columns import config_columns, identity_columns, prompts_columns, scored_images_columns
from evalrun.config import check_image_count, resolve_device, resolve_dtype
from evalrun.console import Phase, quiet_libraries
from evalrun.plain import to_plain
from evalrun.keys import generation_key, run_key
from evalrun.results import finished_run, run_lock
from evalrun.version import __version__

log = logging.getLogger(__name__)


class LazyPipeline:
    """The run's pipeline, loaded (and given the run's scheduler) on first use only."""

    def __init__(self, cfg: Any, pipeline_cls: type, device, dtype, identity: dict[str, Any] | None = None,
                 scheduler_config: dict[str, Any] | None = None) -> None:
        self.cfg, self.cls, self.device, self.dtype, self.pipe = cfg, pipeline_cls, device, dtype, None
        self.identity = identity or None  # the weights the run's image keys name: the loaded pipeline's too
        self.scheduler_config = scheduler_config  # what the checks resolved, and the run's keys and columns name

    def get(self):
        if self.pipe is None:
            from evalrun.pipelines import load_pipeline, set_scheduler

            with Phase("load pipeline"):  # the config carries offload, VAE tiling and the speed options
                self.pipe = load_pipeline(self.cfg.model, self.device, self.dtype, self.cfg, self.identity)
            loaded = set_scheduler(self.pipe, self.cfg.scheduler)
            if self.scheduler_config is not None and loaded != self.scheduler_config:
                # Never label images with a scheduler that did not make them (a pipeline that converts its
                # scheduler in a way pipeline_source does not read): a bug to report, not a user's mistake.
                raise RuntimeError(f"{type(self.pipe).__name__} holds {loaded['class']} {loaded} once loaded, not the "
                                   f"{self.scheduler_config['class']} {self.scheduler_config} the checks resolved")
            self.scheduler_config = loaded
        return self.pipe


def run(cfg: Any, run_dir: Path, image_sources: list[Path] | None = None, checked: Checked | None = None) -> dict[str, Any]:
    """Run ``cfg`` into ``run_dir`` (a shard of it when ``num_shards`` > 1); ``image_sources``: other
    run folders whose images may be reused (a merge reads its shards'). ``cfg``'s interpolations are
    resolved in place. ``checked``: what :func:`evalrun.checked.check` found for this very ``cfg`` (a
    sweep's pre-check), not checked again."""
    run_dir = Path(run_dir)
    quiet_libraries()
    # 1. Validate everything cheap before anything heavy is imported.
    if checked is None:
        checked = Checked(checked_config(cfg))
    else:
        point_cache(cfg)
    plain = to_plain(cfg)  # the keys below hash this
    merged_dir = shards.merged_dir_for(cfg, _hydra()) if shards.sharded(cfg) else None
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    key = run_key(cfg, __version__, device, dtype, plain)
    # Taken now: batch_size=auto is resolved in place later, and the directory's configuration is the one asked for.
    cfg_key = config_key(plain)
    with run_lock(run_dir):
        refuse_other_configuration(run_dir, cfg_key)
        if (done := finished_run(run_dir, key)) is not None:
            log.info("run in %s is already complete; reusing it (delete run.json to recompute)", run_dir)
            return done
        shard = shards.read_record(run_dir) if shards.sharded(cfg) else None
        if shard is not None and shard.get("run_key") == key:
            log.info("shard in %s is already complete; reusing it", run_dir)
            return shard
        claim_directory(run_dir, cfg_key)
        return _compute(cfg, checked, run_dir, key, cfg_key, device, dtype, image_sources or [], merged_dir)


def _compute(cfg: Any, checked: Checked, run_dir: Path, key: str, cfg_key: str, device, dtype, image_sources: list[Path],
             merged_dir: Path | None) -> dict[str, Any]:
    from evalrun.images import ImageStore, clean_partial_files
    from evalrun.metrics.common import check_text_keys
    from evalrun.metrics.features.store import FeatureStore
    from evalrun.paths import cache_dir
    from evalrun.pipelines import model_identity
    from evalrun.scoring import StreamScorer

    t0 = time.perf_counter()
    plan = checked.plan
    task, metrics = plan.task, plan.metrics
    clean_partial_files(run_dir)
    clean_partial_files(run_dir / "images")
    from evalrun.results import clean_stale_partials

    for folder in (cache_dir(), cache_dir() / "reference"):  # half-built tiny models and reference entries
        clean_stale_partials(folder)
    # 2. Records (a bad prompt file fails here, before any model loads) and the image count.
    records = task.load_records(cfg)
    per_record = task.images_per_record(cfg)
    check_image_count(metrics, len(records) * per_record, task)
    check_text_keys(metrics, records)
    # 3. Pipeline class, knobs and scheduler, checked from the checkpoint's files (no weights load).
    pipeline_cls, scheduler_config, model = None, {"class": None}, {}
    if task.generates:
        pipeline_cls, scheduler_config = ((checked.pipeline_cls, checked.scheduler_config) if checked.pipeline_cls
                                          else checked_classes(cfg, task))
        model = model_identity(cfg.model)
    params = task.params(cfg)
    # 4. Metrics: their models and reference features load before the pipeline, so a missing
    #    weights file fails in seconds, not after the checkpoint has sampled.
    store = FeatureStore(_configured(cfg, "feature_cache", cache_dir() / "features"))
    with Phase("load metrics", total=len(metrics), unit="metrics") if metrics else _nothing():
        for metric in metrics.values():
            metric.context.device, metric.context.store, metric.context.run_dir = device, store, run_dir
            metric.load()
    # 5. Records finished with the pipeline (class words -> label ids), then one job per image.
    pipeline = LazyPipeline(cfg, pipeline_cls, device, dtype, model, scheduler_config if task.generates else None)
    records = task.prepare(pipeline, records, cfg)
    jobs = task.jobs(records, per_record, int(cfg.seed))
    if shards.sharded(cfg):  # this job makes whole chunks of the run's images, in run order
        jobs = [jobs[i] for i in shards.select(len(jobs), int(cfg.num_shards), int(cfg.shard), cfg.shard_mode)]
    t_load = time.perf_counter()
    # 6. Generate (or reuse, or read) and score, streamed: each chunk is scored as soon as it exists.
    from evalrun.generate import ImageStream, ReadStream
    from evalrun.outputs import defer_writes, overlaps_sampling

    gen_key = generation_key(cfg, params, model, scheduler_config, dtype, device, task.count_knobs)
    if cfg.batch_size == "auto":
        cfg.batch_size = resolve_batch_size(cfg, task, pipeline, jobs, params, model, device, dtype)
    if task.generates:
        image_store = ImageStore(_configured(cfg, "image_store", cache_dir() / "images"))
        stream = ImageStream(jobs, run_dir / "images", gen_key, image_store, int(cfg.batch_size), sources=image_sources,
                             threaded=overlaps_sampling(device), warmup=cfg.get("timing_warmup", True) is not False)
    else:
        stream = ReadStream(jobs, run_dir / "images", task)
    scorer = StreamScorer(metrics, store, task.grid(cfg, jobs), int(cfg.seed))
    with Phase("generate and score", total=len(jobs)) as phase:
        # In a sweep (outputs.background_writes) the last PNGs are written while this run's files are.
        deferred = defer_writes(device) and not shards.sharded(cfg)
        for produced in stream.run(pipeline.get, task, params, progress=phase.advance, wait=not deferred):
            scorer.add(produced)
        if len(scorer.rows) != len(jobs):  # a bug, never a user's mistake: a short run must not be written
            raise RuntimeError(f"the image stream gave {len(scorer.rows)} images for {len(jobs)} jobs")
        if shards.sharded(cfg):  # a shard's features are cached for the merge; its set metrics mean nothing alone
            scorer.flush()
            return shards.write_record(run_dir, cfg, key, merged_dir, [j.image_id for j in jobs], stream,
                                       cfg_key)
        results = scorer.finish()
    t_done = time.perf_counter()
    # 7. Write images.csv, per_image.csv, metrics.csv, grid.png, then run.json last (it marks completion).
    from evalrun.metrics.protocol import protocol_columns
    from evalrun.outputs import write_run

    columns = {**config_columns(cfg, task, params, scheduler_config, device, dtype), **prompts_columns(task, records),
               **scored_images_columns(task, scorer.rows), **identity_columns(model),
               **protocol_columns(cfg, metrics, results, len(jobs))}
    return write_run(run_dir, cfg, plan, columns, results,
                     scorer, stream, store, model=model, scheduler_config=scheduler_config, device=device,
                     run_key=key, generation_key=gen_key, config_key=cfg_key,
                     seconds={"load": round(t_load - t0, 3), "generate_and_score": round(t_done - t_load, 3)})


def resolve_batch_size(cfg: Any, task: Any, pipeline: LazyPipeline, jobs: list, params: dict, model: dict, device,
                       dtype) -> int:
    """``batch_size=auto``: the largest batch that fits, found once per (model, size, dtype, guidance, device,
    memory and speed options)."""
    from evalrun.acceleration import auto_batch_size
    from evalrun.generate import sample
    from evalrun.paths import cache_dir

    def probe(batch: int) -> None:  # one step: its peak and the VAE decode of the whole batch are the peaks
        probe_jobs = [jobs[i % len(jobs)] for i in range(batch)]
        sample(pipeline.get(), task, probe_jobs, {**params, "steps": 1})

    from evalrun.acceleration import options
    from evalrun.pipelines import memory_options

    # Everything that moves the peak: offload and VAE tiling/slicing, and the speed options (compile, attention).
    memo = {"weights": model.get("weights_sha256"), "path": str(cfg.model.path), "params": params, "dtype": str(dtype),
            "device": str(device), "gpu": _gpu_name(device), "memory": memory_options(cfg), "speed": options(cfg)}
    return auto_batch_size(probe, memo, cache_dir() / "batch_sizes.json", device)


def _gpu_name(device) -> str | None:
    import torch

    return torch.cuda.get_device_name(device) if getattr(device, "type", "") == "cuda" else None


def config_key(cfg: Any) -> str:
    """What makes a configuration (not where caches live): two runs with different keys never share a directory."""
    from evalrun.hashing import stable_hash

    return stable_hash({k: v for k, v in to_plain(cfg).items() if k != "paths"})


CLAIM_FILE = ".config_key"  # the configuration computing (or last computed) in a directory


def refuse_other_configuration(run_dir: Path, cfg_key: str) -> None:
    """A directory that holds another configuration's results, finished or not, is never written into (a
    same configuration whose inputs changed, e.g. a prompt file edited in place, is recomputed there)."""
    import json

    from evalrun.errors import DirectoryTaken

    for name in ("run.json", shards.SHARD_FILE, CLAIM_FILE):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            recorded = text.strip() if name == CLAIM_FILE else json.loads(text).get("config_key")
        except (ValueError, AttributeError):  # not JSON, or not an object: no record of any configuration
            return
        if recorded and recorded != cfg_key and (name != CLAIM_FILE or _holds_images(run_dir)):
            raise DirectoryTaken(f"{run_dir} holds the results of another configuration ({name}); run into another "
                               f"directory (hydra.run.dir= or hydra.sweep.dir=; evalrun.score --out; the API's "
                               f"run_dir=) or delete it to recompute there", directory=Path(run_dir))


def _holds_images(run_dir: Path) -> bool:
    """Whether a claimed directory holds any image: a claim a run left with nothing in it (refused by a check
    before its first image, e.g. too few images for a metric) is taken over by the corrected configuration."""
    import os

    try:
        with os.scandir(run_dir / "images") as entries:
            return any(entry.name.endswith(".png") for entry in entries)
    except OSError:
        return False


def _hydra():
    """Hydra's config of the job running this, or None outside a Hydra app (Python API, tests)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get() if HydraConfig.initialized() else None
    except ImportError:
        return None


def claim_directory(run_dir: Path, cfg_key: str) -> None:
    """Before computing: mark the directory as this configuration's (a killed run's images are never
    mixed with another configuration's), and withdraw a stale completion record, so that a run killed
    while recomputing changed inputs in place never reads as complete with the old inputs' record."""
    from evalrun.results import atomic_write_text

    atomic_write_text(run_dir / CLAIM_FILE, cfg_key + "\n")
    for name in ("run.json", shards.SHARD_FILE):
        (run_dir / name).unlink(missing_ok=True)


def _configured(cfg: Any, key: str, default: Path) -> Path | None:
    """A store folder from the paths group: ``paths.<key>``, else ``default``; ``none`` turns the store off."""
    configured = cfg.paths.get(key) if cfg.get("paths") else None
    if configured in (False, "none", "off"):
        return None
    return Path(str(configured)).expanduser() if configured else default


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None
