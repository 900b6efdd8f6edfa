"""Current model families on their tiny twins: every preset runs under debug=smoke, one generator per
image holds through the run path for every new pipeline, and real CLI sweeps give one summary row
per (model, scheduler).

The twins are built once per session into the test cache (a second or two each). Qwen-Image-Edit's
twin resizes every input to about 1 MP, as the real pipeline does (seconds per image on CPU): its
preset's test is marked slow, as are the CLI sweeps that repeat what the fast ones cover.

Tiny models run on one thread here: on a shared 2-core machine, torch's thread pool makes these
microsecond-sized ops ten times slower.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import assert_refused_before_import, cli, compose, error_of, run_inprocess
from evalrun.paths import CONF_DIR

NEW_PRESETS = ["sdxl", "sdxl_turbo", "sd3_medium", "sd35_medium", "sd35_large", "sd35_large_turbo", "flux_dev",
               "flux_schnell", "flux2_dev", "sana_1600m", "pixart_sigma", "qwen_image", "z_image_turbo", "lumina2",
               "chroma", "cogview4", "flux_kontext", "qwen_image_edit", "custom"]
SLOW = {"qwen_image_edit"}
EDIT = {"flux_kontext", "qwen_image_edit"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _preset(name: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml"))


def _first_of_twin() -> set[str]:
    """One preset per smoke twin: the batch-invariance check runs once per pipeline, not per preset."""
    seen, first = set(), set()
    for name in NEW_PRESETS:
        twin = _preset(name)["smoke_twin"]
        if twin not in seen:
            seen.add(twin)
            first.add(name)
    return first


FIRST = _first_of_twin()


def _pixels(run_dir) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted((run_dir / "images").glob("*.png")):
        with Image.open(path) as im:
            out[path.name] = np.asarray(im.convert("RGB"), dtype=np.int16)
    return out


def test_new_presets_declare_what_the_runner_needs():
    from evalrun import tiny

    for name in NEW_PRESETS:
        preset = _preset(name)
        assert preset["prediction"] in ("epsilon", "v_prediction", "flow", "auto"), name
        assert preset["guidance"] in ("cfg", "distilled", "true_cfg", "none"), name
        assert preset["smoke_twin"] in tiny.BUILDERS, name
        if preset["guidance"] == "none":
            assert preset["default_guidance_scale"] == 0.0, name
        if preset["guidance"] == "true_cfg":
            assert preset["default_guidance_scale"] is None and preset["default_negative_prompt"], name
    cfg = compose("model=flux_dev")
    assert cfg.dtype == "bfloat16" and cfg.max_sequence_length == 512 and cfg.true_cfg_scale is None
    assert compose("model=sd15").dtype == "auto"  # unchanged meaning: fp16 on CUDA, fp32 on CPU
    assert compose("model=flux_dev", "debug=smoke").dtype == "float32"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NEW_PRESETS])
def test_preset_runs_under_smoke_and_batching_does_not_change_images(tmp_path, name):
    """``model=<preset> debug=smoke`` runs on the preset's twin; for the first preset of each twin, batch
    size 1 and 3 give the same PNGs (one CPU generator per image, through the real run path)."""
    extra = ["prompts=edit_demo"] if name in EDIT else []
    n = 2 if name in SLOW else 3  # Qwen-Image-Edit's twin resizes every input to ~1 MP: keep it short
    # timing_warmup=false: the twins' timings are not what is tested, and a warm-up call is one more batch each
    common = [f"model={name}", "debug=smoke", "steps=2", f"prompts.limit={n}", "paths.image_store=none",
              "timing_warmup=false", *extra]
    one = run_inprocess(*common, "batch_size=1", run_dir=tmp_path / "b1")
    assert one["provenance"]["smoke_model_random_weights"] is True
    scores = [v for k, v in one["values"].items() if one["columns"][k]["kind"] == "score"]
    assert one["provenance"]["n_images"] == n and scores and all(np.isfinite(v) for v in scores)
    truncation = one["provenance"]["text_truncation"]
    assert truncation and all("error" not in v for v in truncation.values()), truncation
    row = pd.read_csv(tmp_path / "b1" / "metrics.csv").iloc[0]
    assert row["guidance"] == _preset(name)["guidance"]
    if name == "lumina2":  # the authors' CFG truncation after 25% of the steps reaches the pipeline: at 2
        assert row["nfe"] == 2  # steps no step runs CFG's second pass (4 with the pipeline's default, 1.0)
    if name == "custom":  # AutoPipelineForText2Image resolved from the twin's model_index.json
        assert row["pipeline"] == "AutoPipelineForText2Image" and row["pipeline_class"] == "StableDiffusionPipeline"
    if name not in FIRST:
        return
    if name == "cogview4":  # batch dependent in diffusers 0.42: refused rather than recorded as invariant
        assert "use batch_size=1" in error_of(*common, "batch_size=3", run_dir=tmp_path / "b3")
        return
    run_inprocess(*common, f"batch_size={n}", run_dir=tmp_path / "b3")
    a, b = _pixels(tmp_path / "b1"), _pixels(tmp_path / "b3")
    assert list(a) == list(b) and len(a) == n
    assert len({v.tobytes() for v in a.values()}) == n  # different prompts and seeds really differ
    for key in a:
        diff = np.abs(a[key] - b[key])
        # Byte-identical on every twin when measured, except SD3's (one uint8 value of one image, one
        # level: batched CPU kernels round differently, ~3e-6). A seeding error would move every pixel.
        assert diff.max() <= 1 and (diff > 0).sum() <= 4, (key, int(diff.max()), int((diff > 0).sum()))


def test_cli_sweep_over_both_families_runs_the_pairs_that_fit_and_refuses_the_others(tmp_path):
    """One sweep, five twins x two epsilon and two flow samplers x two seeds: one summary row per
    (model, scheduler) that fits, and each mismatched job failed alone with its one-line reason."""
    cli("model=tiny_sdxl,tiny_pixart,tiny_sd3,tiny_flux,tiny_sana", "scheduler=ddim,dpm,flow_euler,flow_dpm",
        "seed=0,1", "prompts.limit=2", "steps=2", "timing_warmup=false", f"hydra.sweep.dir={tmp_path}", "-m", check=False)
    flow, eps = ("tiny_flux", "tiny_sana", "tiny_sd3"), ("tiny_pixart", "tiny_sdxl")
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(zip(summary["model"], summary["scheduler"])) == sorted(
        [(m, s) for m in flow for s in ("flow_dpm", "flow_euler")] + [(m, s) for m in eps for s in ("ddim", "dpm")])
    assert (summary["clip_score_n"] == 2).all() and set(summary["seeds"].astype(str)) == {"0 1"}
    failed = pd.read_csv(tmp_path / "failed_runs.csv")
    assert len(failed) == 20 and failed["error"].str.contains("fits ").all()
    assert failed["error"].str.contains("is a flow model").sum() == 12  # 3 flow twins x ddim, dpm x 2 seeds
    assert failed["error"].str.contains("is an epsilon model").sum() == 8
    runs = {}
    for path in tmp_path.glob("*/run.json"):
        record = json.loads(path.read_text())
        runs[f"{record['config']['model']['name']}/{record['config']['scheduler']['name']}"] = \
            record["provenance"]["scheduler_config"]
    # SD3 ships FlowMatchEuler shift 3.0: DPM-Solver gets it as flow_shift; Sana's flow_shift 3.0 reaches FlowMatch's shift.
    assert runs["tiny_sd3/flow_dpm"]["flow_shift"] == 3.0 and runs["tiny_sd3/flow_dpm"]["use_flow_sigmas"] is True
    assert runs["tiny_sana/flow_euler"]["shift"] == 3.0 and runs["tiny_sana/flow_euler"]["class"].startswith("FlowMatch")
    assert runs["tiny_flux/flow_dpm"]["use_dynamic_shifting"] is True  # FLUX.1-dev's resolution-dependent shift


@pytest.mark.parametrize("overrides, expected", [
    (["model=tiny_sd3", "scheduler=ddim"], "scheduler=ddim fits epsilon/v_prediction models, but model tiny_sd3 is a "
                                           "flow model (model.prediction); use one of: default, flow_dpm, flow_euler"),
    (["model=tiny", "scheduler=flow_euler"], "scheduler=flow_euler fits flow models, but model tiny is an epsilon "
                                             "model (model.prediction); use one of: default, ddim, ddpm, deis, dpm"),
])
def test_cli_refuses_a_scheduler_of_the_other_family_in_one_line(tmp_path, overrides, expected):
    proc = cli(f"hydra.run.dir={tmp_path}", *overrides, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("evalrun: error: ") and expected in lines[0], proc.stderr
    assert not (tmp_path / "images").exists()  # refused before anything ran


def test_a_family_mismatch_is_answered_before_torch_is_imported():
    assert_refused_before_import([("model=sd3_medium", "scheduler=ddim"), ("model=sd15", "scheduler=flow_dpm")],
                                 heavy=("torch", "diffusers"))


@pytest.mark.slow
def test_the_issues_flux_sweep_runs_offline_on_the_twin(tmp_path):
    """The command of the issue's "done when", under debug=smoke (FLUX.1 [dev]'s twin)."""
    cli("model=flux_dev", "scheduler=flow_euler,flow_dpm", "steps=10,20,28", "seed=0,1,2", "debug=smoke",
        f"hydra.sweep.dir={tmp_path}", "-m")
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(zip(summary["scheduler"], summary["steps"])) == [(s, n) for s in ("flow_dpm", "flow_euler")
                                                                   for n in (10, 20, 28)]
    assert (summary["clip_score_n"] == 3).all() and (summary["guidance"] == "distilled").all()


@pytest.mark.slow
def test_edit_sweep_through_the_cli_scores_kontext_edits(tmp_path):
    cli("model=tiny_flux_kontext", "prompts=edit_demo", "scheduler=flow_euler,flow_unipc", "seed=0,1",
        "prompts.limit=2", "steps=2", f"hydra.sweep.dir={tmp_path}", "-m")
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(summary["scheduler"]) == ["flow_euler", "flow_unipc"] and (summary["clip_score_n"] == 2).all()
    for metric in ("clip_directional", "clip_image_similarity"):
        assert summary[f"{metric}_mean"].notna().all()
