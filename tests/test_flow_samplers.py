"""Flow-matching samplers, guidance knobs and prompt truncation on the tiny twins, in-process.

Refusals happen before any weights load (most before torch is imported) and name what fits; the
resolved scheduler config that ran is recorded; the truncation counts agree with what the
pipelines themselves cut.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import compose, error_of, run_inprocess
from evalrun import tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMOKE = ["debug=smoke", "steps=2", "metrics=[]"]


@pytest.mark.parametrize("overrides, expected", [
    # Pairs that would fail mid-run or sample from the global RNG, found before the weights load.
    (["model=tiny_flux", "scheduler=flow_heun"],
     "FluxPipeline cannot set 4 timesteps with FlowMatchHeunDiscreteScheduler (as it calls set_timesteps), so the "
     "run would fail after the model loads (ValueError: The current scheduler class"),
    (["model=tiny_flux", "scheduler=flow_heun"],
     "; use one of: default, flow_dpm, flow_euler, flow_euler_beta, flow_euler_exponential, flow_euler_karras, "
     "flow_unipc"),
    (["model=flux_schnell", *SMOKE, "scheduler=flow_dpm"], "(AssertionError"),
    # The option works as shipped: the kwargs set are what fails (not "use one of: ..., flow_dpm, ...").
    (["model=flux_dev", *SMOKE, "scheduler=flow_dpm", "scheduler.kwargs.use_dynamic_shifting=false"],
     "(AssertionError); scheduler=flow_dpm works with its own kwargs: drop the scheduler.kwargs set here, or use "
     "one of: default, flow_euler, flow_euler_beta, flow_euler_exponential, flow_euler_karras, flow_unipc"),
    (["model=tiny_flux", "scheduler=flow_euler", "+scheduler.kwargs.stochastic_sampling=true"],
     "FluxPipeline calls scheduler.step without the per-image generators, so the stochastic "
     "FlowMatchEulerDiscreteScheduler would draw from the global RNG"),
    (["model=tiny_sd3", "scheduler=flow_dpm", "+scheduler.kwargs.algorithm_type=sde-dpmsolver++"],
     "StableDiffusion3Pipeline calls scheduler.step without the per-image generators"),
    (["model=z_image_turbo", *SMOKE, "scheduler=flow_unipc"], "ZImagePipeline cannot set"),
    # The checkpoint decides when the preset does not say (model.prediction=auto).
    (["model=custom", "model.path=evalrun/tiny-sd3", "scheduler=ddim"],
     "scheduler=ddim fits epsilon/v_prediction models, but this checkpoint's own scheduler "
     "(FlowMatchEulerDiscreteScheduler) is a flow scheduler; use one of: default, flow_dpm"),
    (["model=tiny", "model.prediction=flux"], "model.prediction='flux' is not valid"),
    # Knobs the pipeline does not take, or that would have no effect.
    (["model=tiny_sdxl", "true_cfg_scale=2.0"],
     "true_cfg_scale=2.0 has no effect on StableDiffusionXLPipeline (its __call__ takes no true_cfg_scale)"),
    (["model=tiny", "max_sequence_length=77"], "has no effect on StableDiffusionPipeline (its __call__ takes no "
                                               "max_sequence_length)"),
    (["model=tiny_dit", "prompts=classes", "prompts.negative_prompt=blurry"],
     "prompts.negative_prompt='blurry' has no effect on DiTPipeline (its __call__ takes no negative_prompt)"),
    (["model=tiny_flux", "true_cfg_scale=4.0"], "true_cfg_scale=4.0 has no effect on FluxPipeline without a negative"),
    (["model=tiny_flux", "prompts.negative_prompt=blurry"], "has no effect on FluxPipeline unless true_cfg_scale > 1"),
    (["model=qwen_image", *SMOKE, "prompts.negative_prompt=null"], "true_cfg_scale=4.0 has no effect"),
    (["model=qwen_image", *SMOKE, "guidance_scale=4.0"], "guidance_scale=4.0 has no effect on model 'qwen_image' "
                                                         "(model.guidance: true_cfg"),
    (["model=flux_schnell", "guidance_scale=3.5"], "guidance_scale must be 0, got 3.5"),
    (["model=cogview4", *SMOKE, "batch_size=2"], "CogView4Pipeline pads the prompts of one call to the longest"),
    (["model=tiny_sd3", "+model.call_kwargs.no_such_argument=1"], "model.call_kwargs.no_such_argument is not an "
                                                                   "argument of StableDiffusion3Pipeline.__call__"),
    (["model=tiny_sd3", "+model.call_kwargs.guidance_scale=1"], "evalrun sets guidance_scale itself"),
    (["model=tiny_sana", "height=48"], "height=48 must be a multiple of 32 for SanaPipeline"),
    (["model=tiny_sd3", "offload=sequential", "device=cpu"], "offload=sequential needs a GPU"),
    (["model=custom"], "model.path is empty"),
    # Scheduler settings that would not take effect, or fail at the first step.
    (["model=flux_dev", *SMOKE, "scheduler=flow_euler", "scheduler.kwargs.shift=3.0"],
     "scheduler.kwargs.shift=3.0 has no effect: FluxPipeline samples the same timesteps with "
     "FlowMatchEulerDiscreteScheduler at any shift (a sweep over it would make the same images under several names); "
     "add scheduler.kwargs.use_dynamic_shifting=false"),
    (["model=tiny_sana", "scheduler=flow_dpm", "scheduler.kwargs.use_dynamic_shifting=true"],
     "use_dynamic_shifting=True has no effect: SanaPipeline samples the same timesteps"),
    (["model=tiny_sana", "scheduler=flow_euler", "scheduler.kwargs.use_dynamic_shifting=true"],
     "SanaPipeline cannot set 4 timesteps with FlowMatchEulerDiscreteScheduler"),
    (["model=tiny_sd3", "scheduler=flow_heun", "+scheduler.kwargs.use_karras_sigmas=true"],
     "scheduler.kwargs ['use_karras_sigmas'] are not options of FlowMatchHeunDiscreteScheduler; valid: "
     "num_train_timesteps, shift"),
    (["model=tiny_flux", "max_sequence_length=1024"], "max_sequence_length=1024 is more than FluxPipeline takes (at "
                                                       "most 512)"),
    (["model=tiny_sd3", "max_sequence_length=600"], "max_sequence_length=600 is more than StableDiffusion3Pipeline"),
    # Kwargs that make a sampler of the other family, or a sigma spacing that drops a flow sampler's sigmas
    # (DPM-Solver applies Karras/exponential spacing before its flow branch): these ran and sampled garbage.
    (["model=tiny", "scheduler=dpm", "++scheduler.kwargs.use_flow_sigmas=true"],
     "builds flow sigmas with prediction_type=epsilon (DPMSolverMultistepScheduler), which does not fit this "
     "checkpoint's own epsilon scheduler (PNDMScheduler); use one of: "),
    (["model=tiny_sd3", "scheduler=flow_dpm", "++scheduler.kwargs.prediction_type=epsilon"],
     "builds flow sigmas with prediction_type=epsilon (DPMSolverMultistepScheduler), which does not fit this "
     "checkpoint's own flow scheduler"),
    (["model=tiny", "scheduler=dpm", "++scheduler.kwargs.use_flow_sigmas=true",
      "++scheduler.kwargs.prediction_type=flow_prediction"], "builds a flow sampler (DPMSolverMultistepScheduler), "
                                                              "which does not fit this checkpoint's own epsilon"),
    (["model=tiny_sana", "++scheduler.kwargs.use_karras_sigmas=true"],
     "with use_karras_sigmas=true ignores its flow sigmas and samples at sigmas up to"),
    (["model=tiny_sd3", "scheduler=flow_dpm", "++scheduler.kwargs.use_exponential_sigmas=true"],
     "with use_exponential_sigmas=true ignores its flow sigmas"),
    (["model=tiny", "steps=1001"], "PNDMScheduler gives 1 distinct timestep(s) for steps=1001, so it would sample "
                                   "wrongly; use at most 1000 steps"),  # it ran, 1,002 calls at timestep 1
    (["model=qwen_image", *SMOKE, "steps=4", "scheduler=flow_unipc", "++scheduler.kwargs.use_exponential_sigmas=true"],
     "UniPCMultistepScheduler with this config gives rising sigmas (0.25, 0.397, 0.63, 1, 0)"),
    (["model=tiny_ddpm", "num_images=2", "scheduler=unipc"],
     "DDPMPipeline passes generator= to scheduler.step, which UniPCMultistepScheduler.step does not take"),
    (["model=tiny_ddpm", "model.pipeline=DDIMPipeline", "num_images=2", "scheduler=ddpm"],
     "DDIMPipeline passes eta=, use_clipped_model_output= to scheduler.step, which DDPMScheduler.step does not take"),
])
def test_refused_in_one_line_before_the_weights_load(tmp_path, overrides, expected):
    from evalrun.pipelines import _CACHE

    before = dict(_CACHE)
    assert expected in error_of(*overrides, run_dir=tmp_path)
    assert _CACHE == before  # nothing was loaded
    assert not (tmp_path / "images").exists()


def test_a_pipeline_that_converts_its_scheduler_records_the_class_that_ran(tmp_path):
    """DDIMPipeline turns the DDPMScheduler its checkpoint names into DDIM when it is built: the run records
    DDIMScheduler, and its images are those of DDPMPipeline with scheduler=ddim, pixel for pixel. A
    loaded pipeline holding another scheduler than the checks resolved is never labelled with theirs."""
    from evalrun.run import LazyPipeline

    common = ["model=tiny_ddpm", "num_images=2", "steps=3", "paths.image_store=none"]
    converted = run_inprocess(*common, "model.pipeline=DDIMPipeline", run_dir=tmp_path / "converted")
    explicit = run_inprocess(*common, "scheduler=ddim", run_dir=tmp_path / "explicit")
    assert converted["provenance"]["scheduler_config"]["class"] == "DDIMScheduler"
    assert pd.read_csv(tmp_path / "converted" / "metrics.csv")["scheduler_class"].item() == "DDIMScheduler"
    assert converted["provenance"]["scheduler_config"] == explicit["provenance"]["scheduler_config"]
    for png in sorted((tmp_path / "explicit" / "images").glob("*.png")):
        assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(tmp_path / "converted" / "images" /
                                                                                   png.name)))
    cfg = compose(*common, "model.pipeline=DDIMPipeline")
    import diffusers

    lazy = LazyPipeline(cfg, diffusers.DDIMPipeline, torch.device("cpu"), torch.float32,
                        scheduler_config={"class": "DDPMScheduler"})
    with pytest.raises(RuntimeError, match="holds DDIMScheduler"):
        lazy.get()


def test_shift_and_sigma_spacing_are_recorded_and_change_the_images(tmp_path):
    records, images = {}, {}
    for label, overrides in {"shift1": ["scheduler=flow_euler", "scheduler.kwargs.shift=1.0"],
                             "shift6": ["scheduler=flow_euler", "scheduler.kwargs.shift=6.0"],
                             "karras": ["scheduler=flow_euler_karras"],
                             "dpm2": ["scheduler=flow_dpm", "scheduler.kwargs.shift=2.0"]}.items():
        records[label] = run_inprocess("model=tiny_sd3", *overrides, "steps=2", "prompts.limit=1", "metrics=[]",
                                       run_dir=tmp_path / label)
        with Image.open(tmp_path / label / "images" / "00000_00.png") as im:
            images[label] = np.asarray(im).copy()
    resolved = {k: r["provenance"]["scheduler_config"] for k, r in records.items()}
    assert resolved["shift1"]["shift"] == 1.0 and resolved["shift6"]["shift"] == 6.0
    assert resolved["karras"]["shift"] == 3.0 and resolved["karras"]["use_karras_sigmas"] is True  # SD3's own shift
    assert resolved["dpm2"]["class"] == "DPMSolverMultistepScheduler" and resolved["dpm2"]["flow_shift"] == 2.0
    assert records["shift1"]["generation_key"] != records["shift6"]["generation_key"]
    assert not np.array_equal(images["shift1"], images["shift6"])
    columns = pd.read_csv(tmp_path / "shift6" / "metrics.csv").iloc[0]
    assert json.loads(columns["scheduler_kwargs"])["shift"] == 6.0 and columns["guidance"] == "cfg"


def test_checkpoint_shift_crosses_between_flowmatch_and_flow_sigmas():
    """from_config alone would sample SD3 with flow_shift 1.0 under DPM/UniPC and Sana with shift 1.0
    under FlowMatch*: the checkpoint's value is carried across, an option's own shift wins."""
    from evalrun.pipelines import build_scheduler, checkpoint_scheduler

    sd3, sana = checkpoint_scheduler(compose("model=tiny_sd3").model), checkpoint_scheduler(compose("model=tiny_sana").model)
    assert sd3.config.shift == 3.0 and sana.config.flow_shift == 3.0
    for option, key in (("flow_dpm", "flow_shift"), ("flow_unipc", "flow_shift"), ("flow_euler", "shift")):
        assert build_scheduler(sd3, compose(f"scheduler={option}").scheduler)[1][key] == 3.0
        assert build_scheduler(sana, compose(f"scheduler={option}").scheduler)[1][key] == 3.0
    assert build_scheduler(sana, compose("scheduler=flow_heun").scheduler)[1]["shift"] == 3.0
    assert build_scheduler(sana, compose("scheduler=flow_euler", "scheduler.kwargs.shift=5").scheduler)[1]["shift"] == 5
    # Either spelling goes to the key the class reads; what is recorded is what the class reads
    resolved = build_scheduler(sana, compose("scheduler=flow_euler", "+scheduler.kwargs.flow_shift=6").scheduler)[1]
    assert resolved["shift"] == 6 and "flow_shift" not in resolved and "solver_order" not in resolved
    assert build_scheduler(sd3, compose("scheduler=flow_dpm", "scheduler.kwargs.shift=2").scheduler)[1]["flow_shift"] == 2


def test_the_scheduler_config_keys_the_pipeline_reads_are_recorded():
    """QwenImagePipeline computes mu from its scheduler's config (max_shift 0.9, max_image_seq_len 8192 in
    Qwen-Image's files); from_config carries them into UniPC, which has no such parameters. Recorded with
    the class's own, the config in run.json samples the same images again."""
    import diffusers

    from evalrun.pipelines import checked_scheduler, checkpoint_scheduler

    cfg = compose("model=qwen_image", *SMOKE, "scheduler=flow_unipc")
    checkpoint = checkpoint_scheduler(cfg.model)
    resolved = checked_scheduler(diffusers.QwenImagePipeline, checkpoint, cfg.scheduler, 3)
    assert resolved["class"] == "UniPCMultistepScheduler"
    for key in ("base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len"):
        assert resolved[key] == checkpoint.config[key]
    assert resolved["max_shift"] == 0.9 and "invert_sigmas" not in resolved  # read by neither


def test_negative_prompt_is_part_of_each_image_and_a_result_column(tmp_path):
    common = ["model=tiny_sdxl", "steps=2", "prompts.limit=1", "metrics=[]"]
    plain = run_inprocess(*common, run_dir=tmp_path / "plain")
    negative = run_inprocess(*common, "prompts.negative_prompt='blurry, low quality'", run_dir=tmp_path / "neg")
    assert plain["generation_key"] == negative["generation_key"]  # the run's settings did not change...
    rows = [pd.read_csv(tmp_path / d / "images.csv").iloc[0] for d in ("plain", "neg")]
    assert "negative_prompt" not in rows[0] and rows[1]["negative_prompt"] == "blurry, low quality"
    assert pd.read_csv(tmp_path / "neg" / "metrics.csv").iloc[0]["negative_prompt"] == "blurry, low quality"
    with Image.open(tmp_path / "plain" / rows[0]["path"]) as a, Image.open(tmp_path / "neg" / rows[1]["path"]) as b:
        assert a.tobytes() != b.tobytes()  # ...but each image's condition did, so nothing was reused


def test_true_cfg_runs_with_the_presets_negative_prompt(tmp_path):
    record = run_inprocess("model=qwen_image", *SMOKE, "prompts.limit=1", run_dir=tmp_path)
    row = pd.read_csv(tmp_path / "metrics.csv").iloc[0]
    assert row["true_cfg_scale"] == 4.0 and row["negative_prompt"] == " " and row["guidance"] == "true_cfg"
    assert "guidance_scale" not in row  # not passed: QwenImagePipeline ignores it
    assert record["provenance"]["text_truncation"]["tokenizer"]["max_tokens"] == 512


def test_memory_options_are_applied_recorded_and_keyed(tmp_path):
    from evalrun.pipelines import apply_memory_options

    common = ["model=tiny_sd3", "steps=2", "prompts.limit=1", "metrics=[]"]
    plain = run_inprocess(*common, run_dir=tmp_path / "plain")
    tiled = run_inprocess(*common, "vae_tiling=true", "vae_slicing=true", run_dir=tmp_path / "tiled")
    assert plain["generation_key"] != tiled["generation_key"]
    plain_row, tiled_row = (pd.read_csv(tmp_path / d / "metrics.csv").iloc[0] for d in ("plain", "tiled"))
    assert "vae_tiling" not in plain_row and "offload" not in plain_row  # off by default: no columns
    assert bool(tiled_row["vae_tiling"]) and bool(tiled_row["vae_slicing"]) and "offload" not in tiled_row
    # enable_model_cpu_offload is diffusers' own; on CPU it keeps everything in place and changes nothing.
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(tiny.resolve("evalrun/tiny-sd3"))
    pipe.set_progress_bar_config(disable=True)
    call = dict(prompt=["a red cube"], num_inference_steps=2, height=32, width=32, output_type="np")
    before = pipe(generator=[torch.Generator().manual_seed(0)], **call).images
    apply_memory_options(pipe, {"offload": "model", "vae_tiling": False, "vae_slicing": False}, torch.device("cpu"))
    assert pipe._all_hooks
    np.testing.assert_allclose(before, pipe(generator=[torch.Generator().manual_seed(0)], **call).images, atol=1e-5)


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_truncation_counts_match_what_the_pipelines_cut():
    """SD3: its own truncation warnings (per CLIP tokenizer and T5) for each prompt; Qwen-Image: the
    token count its encode_prompt keeps after dropping the template, at a small and a large limit."""
    from diffusers import QwenImagePipeline, StableDiffusion3Pipeline

    from evalrun.truncation import text_truncation

    prompts = ["a red cube", "a photograph of " + "x" * 70, "an astronaut riding a horse on the moon, " * 3]
    cfg = compose("model=tiny_sd3")
    counts = text_truncation(cfg.model, StableDiffusion3Pipeline, prompts, 40)
    assert {k: v["max_tokens"] for k, v in counts.items()} == {"tokenizer": 77, "tokenizer_2": 77, "tokenizer_3": 40}
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny.resolve("evalrun/tiny-sd3"))
    handler, logger = _Warnings(), logging.getLogger("diffusers")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        cut = {"clip": 0, "t5": 0}
        for prompt in prompts:
            handler.messages.clear()
            pipe.encode_prompt(prompt, prompt, prompt, do_classifier_free_guidance=False, max_sequence_length=40)
            cut["clip"] += sum("CLIP can only handle" in m for m in handler.messages)
            cut["t5"] += any("max_sequence_length" in m for m in handler.messages)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert cut["clip"] == counts["tokenizer"]["truncated"] + counts["tokenizer_2"]["truncated"] == 4
    assert cut["t5"] == counts["tokenizer_3"]["truncated"] == 2

    qwen = QwenImagePipeline.from_pretrained(tiny.resolve("evalrun/tiny-qwen-image"))
    kept = {p: qwen.encode_prompt(p, max_sequence_length=10_000)[0].shape[1] for p in prompts}  # one prompt: no padding
    limit = sorted(kept.values())[1]  # the middle prompt fits exactly, the longest is cut
    counts = text_truncation(compose("model=qwen_image", "debug=smoke").model, QwenImagePipeline, prompts, limit)
    assert counts["tokenizer"] == {"max_tokens": limit, "truncated": 1, "prompts": 3}
    assert sum(qwen.encode_prompt(p, max_sequence_length=limit)[0].shape[1] < kept[p] for p in prompts) == 1


# twin -> (pipeline class, extra call arguments at the twin's size)
TWINS = {
    "evalrun/tiny-flux": ("FluxPipeline", {}),
    "evalrun/tiny-sd3": ("StableDiffusion3Pipeline", {}),
    "evalrun/tiny-flux-schnell": ("FluxPipeline", {"guidance_scale": 0.0}),
    "evalrun/tiny-flux-kontext": ("FluxKontextPipeline", {"_auto_resize": False, "max_area": 32 * 32}),
    "evalrun/tiny-flux2": ("Flux2Pipeline", {}),
    "evalrun/tiny-chroma": ("ChromaPipeline", {}),
    "evalrun/tiny-sana": ("SanaPipeline", {"use_resolution_binning": False, "height": 64, "width": 64}),
    "evalrun/tiny-pixart-sigma": ("PixArtSigmaPipeline", {"use_resolution_binning": False, "clean_caption": False}),
    "evalrun/tiny-qwen-image": ("QwenImagePipeline", {}),
    "evalrun/tiny-z-image": ("ZImagePipeline", {}),
    "evalrun/tiny-lumina2": ("Lumina2Pipeline", {}),
    "evalrun/tiny-cogview4": ("CogView4Pipeline", {}),
    "evalrun/tiny-sdxl": ("StableDiffusionXLPipeline", {}),
}
# Stochastic variants beside the config group's options (they are refused where step gets no generators).
STOCHASTIC = {
    "flow_euler_sde": {"class_name": "FlowMatchEulerDiscreteScheduler", "kwargs": {"stochastic_sampling": True}},
    "flow_lcm": {"class_name": "FlowMatchLCMScheduler", "kwargs": {}},
    "flow_dpm_sde": {"class_name": "DPMSolverMultistepScheduler", "kwargs": {
        "use_flow_sigmas": True, "prediction_type": "flow_prediction", "algorithm_type": "sde-dpmsolver++"}},
}


@pytest.mark.parametrize("twin", [t if t == "evalrun/tiny-flux" else pytest.param(t, marks=pytest.mark.slow)
                                  for t in TWINS])
def test_scheduler_checks_agree_with_what_the_pipeline_does(twin):
    """Every scheduler option of the twin's family (and stochastic variants): check_scheduler accepts it
    exactly when a real generation runs and does not depend on the global RNG."""
    import diffusers
    from omegaconf import OmegaConf

    from evalrun.scheduler_fits import FAMILIES, scheduler_options
    from evalrun.scheduler_checks import scheduler_problem
    from evalrun.schedulers import build_scheduler, family

    cls_name, extra = TWINS[twin]
    cls = getattr(diffusers, cls_name)
    pipe = cls.from_pretrained(tiny.resolve(twin))
    pipe.set_progress_bar_config(disable=True)
    checkpoint = pipe.scheduler
    options = {**scheduler_options(), **{k: {"name": k, "fits": ["flow"], **v} for k, v in STOCHASTIC.items()}}
    call = {"height": 32, "width": 32, **extra, "num_inference_steps": 4, "output_type": "np"}
    if "Kontext" in cls_name:
        call["image"] = [Image.new("RGB", (32, 32), (200, 30, 30))]
    disagree = []
    for name, option in options.items():
        if family(checkpoint) not in option.get("fits", FAMILIES):
            continue
        built, _ = build_scheduler(checkpoint, OmegaConf.create({"class_name": None, "kwargs": {}, **option}))
        refused = scheduler_problem(cls, built, 4) is not None
        pipe.scheduler = built

        def generate(global_seed: int):
            torch.manual_seed(global_seed)
            return pipe(prompt=["a red cat"], generator=[torch.Generator().manual_seed(0)], **call).images

        try:
            first = generate(1)
            works = bool(np.isfinite(first).all()) and np.array_equal(first, generate(2))
        except Exception:  # noqa: BLE001 - the point is whether it fails
            works = False
        if refused == works:
            disagree.append(f"{name}: {'refused' if refused else 'accepted'} but {'runs' if works else 'fails'}")
    assert not disagree, disagree


@pytest.mark.parametrize("overrides, expected", [
    (["model.pipeline=StableDiffusionXLPipeline"], "model.pipeline=StableDiffusionXLPipeline needs tokenizer_2, "
     "text_encoder_2, which model.path=evalrun/tiny-sd does not have (its model_index.json names StableDiffusionPipeline)"),
    (["model=tiny_sd3", "model.pipeline=FluxPipeline"], "model.pipeline=FluxPipeline takes other networks than "
     "model.path=evalrun/tiny-sd3 holds: text_encoder CLIPTextModelWithProjection (not CLIPTextModel)"),
])
def test_a_pipeline_class_the_checkpoint_does_not_fit_is_refused_before_the_load(tmp_path, overrides, expected):
    """They loaded (diffusers fills a missing component with None) and failed at the first prompt with a traceback."""
    from evalrun.pipelines import _CACHE

    before = dict(_CACHE)
    assert expected in error_of(*overrides, "prompts.limit=1", run_dir=tmp_path)
    assert _CACHE == before


def test_a_whole_number_written_as_an_int_or_a_float_is_one_configuration(tmp_path):
    """scheduler.kwargs.shift=3 and =3.0 sample the same images: one image key (the second reuses the first's
    images from the store) and one configuration in the summary (its repeat of the seed counted once)."""
    import evalrun

    result = evalrun.sweep(["model=tiny_sd3", "scheduler=flow_euler", "scheduler.kwargs.shift=3,3.0", "seed=0",
                            "prompts.limit=1", "steps=2", "metrics=[]", f"paths.image_store={tmp_path / 'store'}"],
                           sweep_dir=tmp_path / "s")
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "s").glob("*/run.json"))]
    assert len(records) == 2 and records[0]["generation_key"] == records[1]["generation_key"]
    assert sorted(r["provenance"]["images"]["sampled"] for r in records) == [0, 1]
    assert len(result.summary) == 1 and result.summary["n_runs"].tolist() == [1]


def test_a_component_folder_missing_from_a_checkpoint_is_named(tmp_path):
    """diffusers said only that no config.json was found in the checkpoint's root."""
    import shutil

    local = tmp_path / "checkpoint"
    shutil.copytree(tiny.resolve("evalrun/tiny-sd"), local)
    shutil.rmtree(local / "vae")
    message = error_of("model=custom", f"model.path={local}", "model.pipeline=StableDiffusionPipeline", "height=32",
                       "width=32", "prompts.limit=1", run_dir=tmp_path / "run")
    assert message == (f"model.path={local}: model_index.json lists vae, but the folder has no vae/; copy the missing "
                       f"folder(s) from the checkpoint (or save_pretrained it again)")
