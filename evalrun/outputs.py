"""Where a run's results are written: images.csv, per_image.csv, metrics.csv, grid.png and run.json.

``run.json`` is written last and marks the run complete. It declares every result column
(``columns``: direction, kind, format, what it depends on) and which config columns follow the
seed (``seed_columns``), so the summary and the report read what a column is instead of
guessing from its name.

Inside ``background_writes()`` (``evalrun.sweep`` uses it), when a GPU samples, the files are written
by a background thread while the next run samples; the record is built, and returned, at once.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

from evalrun.errors import EvalrunError
from evalrun.plain import to_plain
from evalrun.results import RUN_FILE, atomic_write_bytes, environment, library_versions, write_json, write_rows_csv
from evalrun.runs import DERIVED_COLUMNS

log = logging.getLogger("evalrun")


def declared_columns(plan: Any, metric_settings: dict[str, dict[str, Any]],
                     configured: Any = None) -> tuple[dict, list[str]]:
    """(column -> declaration) of every metric output, and the config columns that follow the seed: a seed
    setting left null in ``configured`` (the run's ``metrics`` config). One set explicitly
    (``metrics.kid.seed=1,2``) is a configuration of its own, never averaged with another as a seed."""
    columns, seed_columns = {}, []
    for name, metric in plan.metrics.items():
        depends = [f"{name}.{k}" for k in metric_settings[name]]
        for output in type(metric).outputs:
            columns[output.column] = output.describe(name, depends)
        given = (configured or {}).get(name) or {}
        seed_columns += [f"{name}.{k}" for k in type(metric).seed_settings
                         if metric_settings[name].get(k) is not None and given.get(k) is None]
    return columns, seed_columns


def write_run(run_dir: Path, cfg: Any, plan: Any, columns: dict[str, Any], results: dict, scorer: Any, stream: Any,
              store: Any, *, model: dict, scheduler_config: dict, device: Any, run_key: str, generation_key: str,
              config_key: str, seconds: dict[str, float]) -> dict[str, Any]:
    """Build the run's record and write its files (in the background inside :func:`background_writes`)."""
    rows = scorer.rows
    settings = {name: metric.settings() for name, metric in plan.metrics.items()}
    columns = {**columns, **{f"{name}.{k}": v for name, s in settings.items() for k, v in s.items()}}
    import evalrun.cost as cost

    values = {k: v for r in results.values() for k, v in r.values.items()}
    declared, seed_columns = declared_columns(plan, settings, cfg.get("metrics"))
    # What the images cost beside what they score (carried by reused images from when they were sampled).
    timed = None
    if plan.task.generates:
        batch_size, where = int(cfg.batch_size), cost.device_name(device)
        warmup = cfg.get("timing_warmup", True) is not False
        timed_costs = cost.timed_here(scorer.costs, batch_size, where, warmup, [bool(r.get("reused")) for r in rows])
        values.update(cost.summarise(scorer.costs, timed_costs))
        timed = len(timed_costs)
        if timed < len(rows):
            log.warning("sample_seconds_per_image and peak_memory_gib come from the %d of %d images sampled at "
                        "batch_size=%d on %s with timing_warmup=%s; the others were reused from runs timed otherwise "
                        "(paths.image_store=none samples them all here)", timed, len(rows), batch_size, where,
                        str(warmup).lower())
        declared.update({o.column: o.describe("cost", cost.depends_on(plan.task, cfg)) for o in cost.OUTPUTS})
    for name, result in results.items():  # a metric class of the user's: its mistake, named in one line
        cls = type(plan.metrics[name])
        extra = sorted(set(result.values) - {o.column for o in cls.outputs})
        if extra:
            raise EvalrunError(f"metric {name!r} ({cls.__module__}.{cls.__qualname__}) returned column(s) "
                               f"{', '.join(extra)} that its outputs do not declare; add an Output for each to "
                               f"{cls.__qualname__}.outputs (direction, format, label), or return only "
                               f"{', '.join(o.column for o in cls.outputs) or 'no column'}")
    undeclared = sorted(set(values) - set(declared))
    if undeclared:
        raise RuntimeError(f"undeclared columns {undeclared}")  # evalrun's own (cost) columns: a bug, not user input
    degenerate = sum(1 for r in rows if isinstance(r.get("degenerate"), str) and r["degenerate"] != "")
    summary = {**columns, **values, "n_images": len(rows), "n_degenerate": degenerate}
    random_models = random_weight_models(model, settings, results)
    smoke = bool(random_models)
    record = {
        "status": "complete", "run_key": run_key, "config_key": config_key, "generation_key": generation_key,
        "config_columns": list(columns), "metric_columns": list(values), "columns": declared,
        "seed_columns": seed_columns,
        "derived_columns": {c: key for c, key in DERIVED_COLUMNS.items() if c in columns},
        "higher_is_better": {c: d["direction"] == "higher" for c, d in declared.items() if d["direction"]},
        "values": values,
        "provenance": {
            "model": to_plain(cfg.model), "model_weights": {k: model.get(k) for k in ("source", "snapshot", "weights_sha256")},
            "smoke_model_random_weights": smoke, "random_weight_models": random_models,
            "scheduler_config": scheduler_config, "dtype": columns["dtype"], "device": str(device),
            "environment": environment(device), "batch_size": int(cfg.batch_size),
            "batch_size_used": getattr(stream, "batch_size", None), "n_images": len(rows),
            "n_prompts": len({r["prompt_index"] for r in rows if r.get("prompt_index") is not None}),
            "images": {"sampled": stream.sampled, "reused": stream.reused, "repaired": stream.repaired},
            "cost_timed_images": timed,  # images whose timing (batch size, device) is this run's
            "features": {"extracted": store.extracted, "reused": store.reused},
            "image_format": "PNG (uint8, rounded as diffusers' numpy_to_pil); metrics score these pixels",
            "generator": "one CPU torch.Generator per image, seeded from (seed, prompt_id, image_index)",
            "scoring": f"chunks of {scorer.chunk} images in run order",
            "metrics": {name: r.info for name, r in results.items()}, "versions": library_versions(),
            "seconds": seconds,
            **plan.task.provenance(),  # task facts, e.g. text_truncation per tokenizer (tasks/base.py)
        },
        "config": to_plain(cfg),
    }
    files = (run_dir, stream.wait, rows, results, summary, scorer.grid, record)
    if not defer_writes(device):
        _write_files(*files)
    else:
        _background.submit(files)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}
    log.info("run complete%s: %s -> %s", " (SMOKE MODEL, random weights: numbers mean nothing)" if smoke else "",
             ", ".join(f"{k}={v}" for k, v in shown.items()) or "images only (no metrics)", run_dir)
    return record


def random_weight_models(model: dict, settings: dict[str, dict[str, Any]], results: dict) -> list[str]:
    """What ran with random weights (a tiny twin): the pipeline, or a metric's model. A run that scores with a
    tiny CLIP means nothing either, whatever made its images (a scoring run has no pipeline at all)."""
    import evalrun.tiny as tiny

    def random_source(value: Any) -> bool:
        if not isinstance(value, str) or not value:
            return False
        folder = Path(value).expanduser()
        return tiny.is_tiny(value) or (folder.is_absolute() and folder.is_dir() and tiny.is_random_weights(folder))

    def says_random(info: Any) -> bool:  # extractors record it in their weights identity (inception, dinov2)
        if isinstance(info, dict):
            return info.get("random_weights") is True or any(says_random(v) for v in info.values())
        return isinstance(info, list) and any(says_random(v) for v in info)

    found = ["pipeline"] if model.get("random_weights") else []
    for name, values in settings.items():
        found += [f"{name}.{key}" for key, value in values.items() if random_source(value)]
        if says_random(results[name].info if name in results else None) and not any(f.startswith(f"{name}.") for f in found):
            found.append(name)
    return found


def _write_files(run_dir: Path, images_written: Any, rows: list[dict], results: dict, summary: dict, grid: Any,
                 record: dict) -> None:
    """images.csv, per_image.csv, metrics.csv, grid.png, then run.json last (it marks the run complete),
    once ``images_written()`` has returned: every image is on disk and in the manifest."""
    images_written()
    images = [{k: v for k, v in row.items() if k != "reused"} for row in rows]
    write_rows_csv(images, run_dir / "images.csv")
    per_image = [dict(row) for row in images]
    for result in results.values():
        for col, values in result.per_image.items():
            for row, value in zip(per_image, _aligned(values, len(per_image), col)):
                row[col] = value
    write_rows_csv(per_image, run_dir / "per_image.csv")
    write_rows_csv([summary], run_dir / "metrics.csv")
    if grid is not None:  # a preview: fast compression
        import numpy as np

        from evalrun.grid import encode_png

        atomic_write_bytes(run_dir / "grid.png", encode_png(np.asarray(grid.render())))
    write_json(record, run_dir / RUN_FILE)


def _aligned(values: Any, n: int, column: str) -> list:
    """A metric's per-image values, one per image (as a DataFrame column assignment requires)."""
    values = list(values)
    if len(values) != n:
        raise ValueError(f"per-image column {column!r} has {len(values)} values for {n} images")
    return values


class _Writer:
    """One thread that writes finished runs' files while the next run samples. At most two runs wait
    (their rows and grid images are held in memory); the first error is raised by :meth:`close`."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalrun-results")
        self._pending: list = []

    def submit(self, files: tuple) -> None:
        while len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(_write_files, *files))

    def close(self) -> None:
        try:
            while self._pending:
                self._pending.pop(0).result()
        finally:
            self._pool.shutdown(wait=True)


_background: _Writer | None = None


def overlaps_sampling(device: Any) -> bool:
    """Whether the CPU's work should overlap sampling on ``device``: the next batch sampling on a thread
    while this one is hashed and scored, PNGs and run files written on threads. When an accelerator
    samples, the CPU is free for that work; when the CPU samples, threads only compete with it
    (measured: sampling 5-9% slower on 2 cores)."""
    return getattr(device, "type", str(device)) == "cuda"


def defer_writes(device: Any) -> bool:
    """Whether a run on ``device`` hands its files (and its last PNG writes) to the background writer."""
    return _background is not None and overlaps_sampling(device)


@contextlib.contextmanager
def background_writes() -> Iterator[None]:
    """Inside: each GPU run's result files are written by a background thread, overlapping the next run's
    sampling (``overlaps_sampling``); on leaving, every file is on disk (a write error is raised here). A run
    killed before its ``run.json`` is written is simply incomplete: a re-run reuses its images and scores
    them again."""
    global _background
    if _background is not None:  # nested: the outer block waits
        yield
        return
    _background = _Writer()
    try:
        yield
    finally:
        writer, _background = _background, None
        writer.close()
