"""FID/KID/IS/CMMD through the real CLI: a sweep computes reference features once, and the
run's FID equals torch-fidelity's on the PNGs the run saved (so metrics score exactly those pixels)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import evalrun
from conftest import cli
from evalrun import tiny

METRICS = "metrics=[fid,kid,inception_score,cmmd]"


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    """16 smooth random 32x32 images (real photos would do too; these need no shared data)."""
    ref = tmp_path_factory.mktemp("reference")
    rng = np.random.default_rng(0)
    for i in range(16):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((32, 32), Image.BICUBIC).save(ref / f"{i:02d}.png")
    return ref


def test_sweep_scores_distribution_metrics_and_reuses_reference_features(tmp_path, reference_dir):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    sweep = tmp_path / "sweep"
    common = ["model=tiny_ddpm", "num_images=8", METRICS, "reference=folder", f"reference.path={reference_dir}",
              "metrics.kid.subset_size=6", "metrics.kid.subsets=20", "metrics.inception_score.splits=2"]
    cli(*common, "scheduler=ddim,ddpm", "seed=0,1", f"hydra.sweep.dir={sweep}", "-m")
    run_dirs = sorted(p.parent for p in sweep.glob("*/run.json"))
    assert len(run_dirs) == 4
    records = [json.loads((d / "run.json").read_text()) for d in run_dirs]
    caches = [r["provenance"]["metrics"]["fid"]["reference_cache"] for r in records]
    assert caches.count("computed") == 1 and caches.count("hit") == 3  # reference features once per sweep
    assert {r["provenance"]["metrics"]["kid"]["kid_subset_size"] for r in records} == {6}
    assert {k: v for k, v in records[0]["higher_is_better"].items() if records[0]["columns"][k]["kind"] == "score"} == \
        {"fid": False, "kid_mean": False, "is_mean": True, "cmmd": False}

    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 2 and set(summary["fid_n"]) == {2}  # kid.seed follows seed: not a group key
    runs = pd.concat([pd.read_csv(d / "metrics.csv") for d in run_dirs])
    for _, row in summary.iterrows():
        sel = runs[runs["scheduler"] == row["scheduler"]]
        for m in ("fid", "kid_mean", "is_mean", "cmmd"):
            assert row[f"{m}_mean"] == pytest.approx(sel[m].mean(), rel=1e-12)

    # Independent: torch-fidelity on the saved PNG folder and the reference folder, same weights file.
    weights = str(tiny.resolve("evalrun/tiny-inception") + "/inception.pth")
    row = pd.read_csv(run_dirs[0] / "metrics.csv").iloc[0]
    ref = torch_fidelity.calculate_metrics(
        input1=str(run_dirs[0] / "images"), input2=str(reference_dir), fid=True, isc=True, isc_splits=2,
        feature_extractor_weights_path=weights, cuda=False, verbose=False, cache=False, rng_seed=int(row["seed"]))
    assert row["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert row["is_mean"] == pytest.approx(ref["inception_score_mean"], rel=1e-4)

    # A second sweep (another directory, other images) finds the reference features in the cache: in this
    # process, through the Python API (the CLI's sweep is the one above).
    again = tmp_path / "again"
    evalrun.sweep(["model=tiny_ddpm", "num_images=2", "metrics=[fid]", "reference=folder",
                   f"reference.path={reference_dir}", "scheduler=ddim", "seed=5"], sweep_dir=again)
    record = json.loads(next(again.glob("*/run.json")).read_text())
    assert record["provenance"]["metrics"]["fid"]["reference_cache"] == "hit"


def test_fid_without_reference_is_one_clear_line(tmp_path):
    proc = cli(f"hydra.run.dir={tmp_path}", "model=tiny_ddpm", "num_images=4", "metrics=[fid]", check=False)
    assert proc.returncode == 2 and "reference=folder reference.path=" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_reference_fails_before_the_pipeline_loads(tmp_path):
    npz = tmp_path / "stats.npz"
    np.savez(npz, mu=np.zeros(64), sigma=np.eye(64))  # 64-d statistics: not Inception pool3
    proc = cli(f"hydra.run.dir={tmp_path / 'run'}", "model=tiny_ddpm", "num_images=4", "metrics=[fid]",
                   "reference=npz", f"reference.path={npz}", check=False)
    assert proc.returncode == 2 and "have 64 features" in proc.stderr and "Traceback" not in proc.stderr
    assert "loading DDPMPipeline" not in proc.stdout + proc.stderr  # failed in seconds, not after generating
    proc = cli(f"hydra.run.dir={tmp_path / 'run2'}", "model=tiny_ddpm", "num_images=4", "metrics=[kid]",
                   "reference=npz", f"reference.path={npz}", check=False)
    assert proc.returncode == 2 and "needs reference images" in proc.stderr and "loading DDPMPipeline" not in proc.stdout + proc.stderr
