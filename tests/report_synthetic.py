"""Synthetic sweep dirs in the on-disk run format, for the report tests (no models needed).

Each run dir gets ``run.json``, ``metrics.csv`` (one row), ``per_image.csv``, ``images.csv``
and real PNGs under ``images/``, exactly as the runner writes them.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

PROMPTS = [
    {"prompt_id": "p0", "prompt": "a red cube on a blue sphere", "category": "Artifacts", "challenge": "Basic"},
    {"prompt_id": "p1", "prompt": "<script>window.__xss=1</script> fish & chips \"quoted\"",
     "category": "Food & Beverage", "challenge": "Properties & Positioning"},
    {"prompt_id": "p2", "prompt": "a cat | a dog, 100% fluffy", "category": "Animals", "challenge": None},
    {"prompt_id": "p3", "prompt": "an owl reading a book", "category": "Animals", "challenge": "Imagination"},
]
# What the runner declares in run.json for each metric column (mystery: declared nowhere).
COLUMNS = {
    "clip_score": {"direction": "higher", "kind": "score", "per_image": True, "metric": "clip_score",
                   "depends_on": ["clip_score.clip_model"]},
    "fid": {"direction": "lower", "kind": "score", "metric": "fid", "depends_on": []},
    "kid_mean": {"direction": "lower", "kind": "score", "metric": "kid", "depends_on": ["kid.seed"]},
    "kid_std": {"direction": None, "kind": "spread", "of": "kid_mean", "metric": "kid", "depends_on": ["kid.seed"]},
}
METRICS = ["clip_score", "fid", "kid_mean", "kid_std", "mystery"]
# Cost columns (issue 12) as the runner declares them: kind "cost", direction "lower".
COST_COLUMNS = {
    "nfe": {"direction": "lower", "kind": "cost", "label": "NFE", "unit": None, "metric": "cost", "depends_on": []},
    "sample_seconds_per_image": {"direction": "lower", "kind": "cost", "label": "Seconds per image", "unit": "s",
                                 "metric": "cost", "depends_on": []},
    "peak_memory_gib": {"direction": "lower", "kind": "cost", "label": "Peak memory", "unit": "GiB",
                        "metric": "cost", "depends_on": []},
}
PROVENANCE = {"versions": {"torch": "2.14.1", "diffusers": "0.42.1"}, "environment": {"device": "cpu"},
              "scheduler_config": {"class": "DDIMScheduler", "beta_end": 0.012},
              "model_weights": {"weights_sha256": {"unet": "a" * 64, "vae": "b" * 64}}}
SCHEDULER_CLASS = {"ddim": "DDIMScheduler", "dpm": "DPMSolverMultistepScheduler", "euler": "EulerDiscreteScheduler"}


def _rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(json.dumps(parts, default=str).encode()))


def clip_value(model: str, scheduler: str, steps: int, seed: int, prompt_id: str, image_index: int) -> float:
    """Deterministic pseudo-random per-image CLIP score."""
    return float(20 + 5 * _rng(model, scheduler, steps, seed, prompt_id, image_index).random())


def default_costs(config: dict[str, Any]) -> dict[str, float]:
    """NFE = steps x 2 (classifier-free guidance), seconds proportional to it with a little noise, no GPU memory."""
    nfe = 2 * int(config["steps"])
    jitter = _rng("seconds", config["model"], config["scheduler"], config["steps"], config["seed"]).random()
    return {"nfe": nfe, "sample_seconds_per_image": 0.05 * nfe * (1 + 0.05 * jitter), "peak_memory_gib": float("nan")}


def make_run(run_dir: Path, config: dict[str, Any], prompts: Sequence[dict] = PROMPTS, images_per_prompt: int = 1,
             clip: Callable[..., float] = clip_value, status: str = "complete", size: int = 8,
             costs: Callable[[dict], dict[str, float]] | None = None, smoke: bool = False,
             provenance: dict[str, Any] | None = None, edit_inputs: Path | None = None, edit_pixels: str = "") -> Path:
    """One run dir; ``clip(model, scheduler, steps, seed, prompt_id, image_index)`` gives per-image scores.

    ``costs(config)``: cost columns to write (declared as in :data:`COST_COLUMNS`). ``smoke``: mark the
    run as made with a random-weights smoke model. ``provenance``: run.json's provenance (default
    :data:`PROVENANCE`). ``edit_inputs``: a folder for input images: the run becomes an edit run
    (per-image ``input_path``, ``input_caption``, ``output_caption``; the prompt is the instruction), whose input
    pixels ``edit_pixels`` seeds (the same in two folders: the same inputs)."""
    run_dir = Path(run_dir)
    (run_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for p_index, prompt in enumerate(prompts):
        for i in range(images_per_prompt):
            image_id = f"{p_index:05d}_{i:02d}"
            pixels = _rng(str(run_dir.name), image_id).integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(run_dir / "images" / f"{image_id}.png")
            rows.append({"image_id": image_id, "path": f"images/{image_id}.png", "prompt_index": p_index,
                         "prompt_id": prompt["prompt_id"], "prompt": prompt["prompt"], "category": prompt["category"],
                         "challenge": prompt["challenge"], "seed": config["seed"], "image_index": i,
                         "generator_seed": 1000 * config["seed"] + p_index,
                         "clip_score": clip(config["model"], config["scheduler"], config["steps"], config["seed"],
                                            prompt["prompt_id"], i)})
            if edit_inputs is not None:
                rows[-1].update(edit_record(Path(edit_inputs), p_index, prompt, size, edit_pixels))
    per_image = pd.DataFrame(rows)
    per_image.drop(columns=["clip_score"]).to_csv(run_dir / "images.csv", index=False)
    per_image.to_csv(run_dir / "per_image.csv", index=False)
    r = _rng("set", config["model"], config["scheduler"], config["steps"], config["seed"])
    metrics = {"clip_score": per_image["clip_score"].mean(), "fid": float(100 + 50 * r.random() - 5 * config["steps"]),
               "kid_mean": float(0.01 + 0.02 * r.random()), "kid_std": float(0.001 * r.random()),
               "mystery": float(r.random())}
    cost_values = costs(config) if costs is not None else {}
    columns = {**COLUMNS, **{c: COST_COLUMNS[c] for c in cost_values}}
    pd.DataFrame([{**config, **metrics, **cost_values, "n_images": len(per_image)}]).to_csv(
        run_dir / "metrics.csv", index=False)
    Image.new("RGB", (size * 2, size * 2)).save(run_dir / "grid.png")
    record = {**(PROVENANCE if provenance is None else provenance), "synthetic": True}
    if smoke:
        record["smoke_model_random_weights"] = True
    (run_dir / "run.json").write_text(json.dumps({
        "status": status, "config_columns": list(config), "metric_columns": [*METRICS, *cost_values],
        "columns": columns, "seed_columns": [c for c in config if c == "kid.seed"], "provenance": record}, indent=2))
    return run_dir


def edit_record(folder: Path, p_index: int, prompt: dict, size: int, pixels_from: str = "") -> dict[str, Any]:
    """An edit's input (a PNG under ``folder``, written once) and its captions; ``pixels_from`` seeds other pixels."""
    from evalrun.images import pixel_hash

    path = folder / f"input_{p_index}.png"
    pixels = _rng("input", p_index, pixels_from).integers(0, 256, (size + 4, size, 3), dtype=np.uint8)
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return {"input_path": str(path.resolve()), "input_caption": f"before: {prompt['prompt']}",
            "output_caption": f"after <{p_index}> & done", "input_mode": "RGB", "input_width": size,
            "input_height": size + 4, "input_pixels": pixel_hash(pixels)}


def make_failed(run_dir: Path, error: str) -> Path:
    """A job dir that failed, as the runner leaves it: Hydra's ``.hydra/`` and ``failed.json``."""
    run_dir = Path(run_dir)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / "failed.json").write_text(json.dumps({"status": "failed", "error": error}))
    return run_dir


def config(model: str = "sd15", scheduler: str = "ddim", steps: int = 2, seed: int = 0, **extra: Any) -> dict:
    return {"model": model, "model_path": f"runwayml/{model}", "scheduler": scheduler,
            "scheduler_class": SCHEDULER_CLASS[scheduler], "steps": steps, "guidance_scale": 7.5, "seed": seed,
            "height": 8, "width": 8, "clip_score.clip_model": "openai/clip-vit-base-patch16", **extra}


def make_sweep(sweep_dir: Path, models: Sequence[str] = ("sd15",), schedulers: Sequence[str] = ("ddim", "dpm"),
               steps: Sequence[int] = (2, 3), seeds: Sequence[int] = (0, 1), **kwargs: Any) -> Path:
    """A grid sweep with Hydra-style job dir names; returns ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    for model in models:
        for scheduler in schedulers:
            for n in steps:
                for seed in seeds:
                    make_run(sweep_dir / f"model={model},scheduler={scheduler},seed={seed},steps={n}",
                             config(model, scheduler, n, seed), **kwargs)
    return sweep_dir


def read_metrics(*sweep_dirs: Path) -> pd.DataFrame:
    """Reference loading for the tests: every complete run's metrics.csv, read with plain pandas."""
    frames = []
    for sweep_dir in sweep_dirs:
        for path in sorted(Path(sweep_dir).rglob("metrics.csv")):
            if json.loads((path.parent / "run.json").read_text())["status"] == "complete":
                frames.append(pd.read_csv(path).assign(run_dir=str(path.parent.resolve())))
    return pd.concat(frames, ignore_index=True)
