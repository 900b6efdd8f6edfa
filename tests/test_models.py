"""Loading: tiny models build deterministically; a pipeline saved to a local directory loads through
model.path like a hub id, is identified by its weights, and is not mistaken for a smoke model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from conftest import run_inprocess
from evalrun import tiny
from evalrun.hashing import stable_hash


def test_tiny_model_builds_once_and_is_deterministic(tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    first = Path(tiny.resolve("evalrun/tiny-sd"))
    stamp = (first / tiny.MARKER).stat().st_mtime_ns
    assert Path(tiny.resolve("evalrun/tiny-sd")) == first
    assert (first / tiny.MARKER).stat().st_mtime_ns == stamp  # found, not rebuilt
    monkeypatch.setenv("EVALRUN_CACHE", str(tmp_path))
    second = Path(tiny.resolve("evalrun/tiny-sd"))  # a fresh build elsewhere gives the same weights
    assert second.parent == tmp_path and second != first
    a = StableDiffusionPipeline.from_pretrained(first).unet.state_dict()
    b = StableDiffusionPipeline.from_pretrained(second).unet.state_dict()
    assert all((a[k] == b[k]).all() for k in a)


def test_a_tiny_model_built_by_an_older_builder_is_rebuilt(tmp_path, monkeypatch):
    """The marker records the builder's source digest: a twin whose builder changed since (a narrower
    VAE, a new config field) is rebuilt on its next use, not kept forever."""
    monkeypatch.setenv("EVALRUN_CACHE", str(tmp_path))
    folder = Path(tiny.resolve("evalrun/tiny-ddpm"))
    marker = folder / tiny.MARKER
    assert f"{tiny.DIGEST_LINE}{tiny.builder_digest('evalrun/tiny-ddpm')}" in marker.read_text()
    (folder / "stale-file").write_text("left by the older build")
    marker.write_text(marker.read_text().replace(tiny.DIGEST_LINE, "builder digest (older): "))
    assert Path(tiny.resolve("evalrun/tiny-ddpm")) == folder
    assert not (folder / "stale-file").exists()  # rebuilt, and the older build moved aside
    assert f"{tiny.DIGEST_LINE}{tiny.builder_digest('evalrun/tiny-ddpm')}" in marker.read_text()
    assert [p.name for p in tmp_path.iterdir() if ".partial." in p.name]  # removed an hour later, not now
    stamp = marker.stat().st_mtime_ns
    assert Path(tiny.resolve("evalrun/tiny-ddpm")) == folder and marker.stat().st_mtime_ns == stamp
    # What the digest reads: the builder's module and the evalrun modules it imports (ImageReward's twin takes
    # its sizes from the metric's own module).
    sources = {p.relative_to(tiny._PACKAGE).as_posix() for p in tiny._sources("evalrun.metrics.preference.image_reward_tiny")}
    assert {"metrics/preference/image_reward_tiny.py", "metrics/preference/image_reward.py"} <= sources


def test_local_model_path_runs_and_is_recorded(tmp_path):
    from diffusers import StableDiffusionPipeline

    local = tmp_path / "my-checkpoint"
    StableDiffusionPipeline.from_pretrained(tiny.resolve("evalrun/tiny-sd")).save_pretrained(local)
    run_dir = tmp_path / "run"
    run_inprocess(f"model.path={local}", "prompts.limit=2", "scheduler=euler", run_dir=run_dir)
    row = pd.read_csv(run_dir / "metrics.csv").iloc[0]
    assert row["model_path"] == str(local) and row["scheduler_class"] == "EulerDiscreteScheduler"
    prov = json.loads((run_dir / "run.json").read_text())["provenance"]
    assert prov["scheduler_config"]["class"] == "EulerDiscreteScheduler"
    assert prov["model"]["path"] == str(local)
    # The preset is a smoke model, but these weights were saved by a user: no random-weights marker. The
    # tiny preset's CLIP has random weights, so the run is still marked (its scores mean nothing).
    assert prov["random_weight_models"] == ["clip_score.clip_model"] and prov["smoke_model_random_weights"] is True
    # Each component is identified by the sha256 of its files, computed here with hashlib.
    unet = {f"unet/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((local / "unet").iterdir())}
    assert prov["model_weights"]["weights_sha256"]["unet"] == stable_hash(unet, length=64)
    assert set(prov["model_weights"]["weights_sha256"]) >= {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}


def test_sd21_rehearses_on_a_v_prediction_twin(tmp_path):
    """model=sd21 debug=smoke ran on the epsilon twin: its v-prediction path was never rehearsed (run.json read
    prediction v_prediction beside a scheduler predicting epsilon). A sampler swapped in keeps v-prediction."""
    record = run_inprocess("model=sd21", "debug=smoke", "steps=2", "prompts.limit=1", "scheduler=dpm", run_dir=tmp_path)
    found = record["provenance"]["scheduler_config"]
    assert (found["class"], found["prediction_type"]) == ("DPMSolverMultistepScheduler", "v_prediction")
