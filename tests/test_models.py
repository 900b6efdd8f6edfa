"""Loading: a pipeline saved to a local directory loads through model.path like a hub id."""

from __future__ import annotations

import json

import pandas as pd

from conftest import run_cli
from evalrun import tiny


def test_tiny_model_builds_once_and_is_deterministic(tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    first = tiny.resolve("evalrun/tiny-sd")
    assert (tiny.cache_dir() / "evalrun--tiny-sd" / ".complete").exists()
    assert tiny.resolve("evalrun/tiny-sd") == first  # cached, not rebuilt
    monkeypatch.setenv("EVALRUN_CACHE", str(tmp_path))
    second = tiny.resolve("evalrun/tiny-sd")  # a fresh build elsewhere gives the same weights
    a = StableDiffusionPipeline.from_pretrained(first).unet.state_dict()
    b = StableDiffusionPipeline.from_pretrained(second).unet.state_dict()
    assert all((a[k] == b[k]).all() for k in a)


def test_local_model_path_runs_and_is_recorded(tmp_path):
    from diffusers import StableDiffusionPipeline

    local = tmp_path / "my-checkpoint"
    StableDiffusionPipeline.from_pretrained(tiny.resolve("evalrun/tiny-sd")).save_pretrained(local)
    run_dir = tmp_path / "run"
    run_cli(f"hydra.run.dir={run_dir}", f"model.path={local}", "prompts.limit=2", "scheduler=euler")
    row = pd.read_csv(run_dir / "metrics.csv").iloc[0]
    assert row["model_path"] == str(local) and row["scheduler_class"] == "EulerDiscreteScheduler"
    prov = json.loads((run_dir / "run.json").read_text())["provenance"]
    assert prov["scheduler_config"]["class"] == "EulerDiscreteScheduler"
    assert prov["model"]["path"] == str(local)
