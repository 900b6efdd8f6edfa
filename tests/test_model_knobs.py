"""Model knobs that would fail mid-run or record what never ran: refused in one line before the weights load.

Each refusal that rests on how a pipeline behaves (CFG off at guidance_scale <= 1, guidance_scale ignored
without a guidance embedding) is checked against the tiny twin pipeline itself; the FLUX.2 truncation
count against what Flux2Pipeline cuts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_refused_before_import, compose, error_of
from evalrun import tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMOKE = ["debug=smoke", "steps=2", "metrics=[]"]
NOT_A_LENGTH = ["abc", "-1", "0", "2.5", "true"]


@pytest.mark.parametrize("value", NOT_A_LENGTH)
def test_max_sequence_length_must_be_a_positive_integer(value):
    from evalrun.config import validate
    from evalrun.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        validate(compose("model=flux_dev", *SMOKE, f"max_sequence_length={value}"))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("max_sequence_length must be a positive integer, got ")
    assert "set max_sequence_length=N" in message


def test_max_sequence_length_is_refused_before_torch_is_imported():
    assert_refused_before_import([("model=flux_dev", f"max_sequence_length={v}") for v in NOT_A_LENGTH], SMOKE)


@pytest.mark.parametrize("overrides, expected", [
    # PixArt checks only multiples of 8; its patch-2 transformer then failed at the first step.
    (["model=tiny_pixart", "height=40"], "height=40 must be a multiple of 16 for PixArtSigmaPipeline"),
    (["model=pixart_sigma", *SMOKE, "width=40"], "width=40 must be a multiple of 16 for PixArtSigmaPipeline"),
    # A negative prompt acts only through CFG, which guidance_scale turns off.
    (["model=sdxl_turbo", *SMOKE, "prompts.negative_prompt=blurry"],
     "prompts.negative_prompt='blurry' has no effect on model 'sdxl_turbo' (model.guidance: none, guidance_scale=0.0): "
     "StableDiffusionXLPipeline uses a negative prompt only for classifier-free guidance, which it runs only when "
     "guidance_scale > 1; remove the negative prompt"),
    (["model=sd35_large_turbo", *SMOKE, "prompts.negative_prompt=blurry"],
     "has no effect on model 'sd35_large_turbo' (model.guidance: none"),
    (["model=z_image_turbo", *SMOKE, "prompts.negative_prompt=blurry"],
     "ZImagePipeline uses a negative prompt only for classifier-free guidance, which it runs only when "
     "guidance_scale > 0"),
    (["model=sd3_medium", *SMOKE, "guidance_scale=1", "prompts.negative_prompt=blurry"],
     "prompts.negative_prompt='blurry' has no effect at guidance_scale=1: StableDiffusion3Pipeline uses a negative "
     "prompt only for classifier-free guidance, which it runs only when guidance_scale > 1; set guidance_scale > 1 "
     "or remove the negative prompt"),
    # guidance_scale reaches FLUX.1 / Qwen-Image only through a guidance embedding (transformer/config.json).
    (["model=flux_schnell", *SMOKE, "model.guidance=cfg", "guidance_scale=5"],
     "guidance_scale=5 has no effect on model 'flux_schnell' (model.guidance: cfg): FluxPipeline passes guidance_scale "
     "only to a transformer with a guidance embedding, and this checkpoint's has none"),
    (["model=qwen_image", *SMOKE, "model.guidance=distilled", "guidance_scale=4"],
     "guidance_scale=4 has no effect on model 'qwen_image' (model.guidance: distilled): QwenImagePipeline"),
    (["model=tiny_flux", "model.guidance=true_cfg", "guidance_scale=null"],
     "model.guidance=true_cfg does not fit model 'tiny_flux': its transformer has a guidance embedding"),
])
def test_refused_in_one_line_before_the_weights_load(tmp_path, overrides, expected):
    from evalrun.pipelines import _CACHE

    before = dict(_CACHE)
    assert expected in error_of(*overrides, run_dir=tmp_path)
    assert _CACHE == before and not (tmp_path / "images").exists()


def test_advice_never_names_a_guidance_mode_that_would_be_refused(tmp_path):
    """qwen_image's refusal of guidance_scale used to advise model.guidance=distilled, which has no effect on it."""
    message = error_of("model=qwen_image", *SMOKE, "guidance_scale=4", run_dir=tmp_path)
    assert "guidance=distilled" not in message and "sweep true_cfg_scale" in message


def test_negative_prompt_and_guidance_that_act_are_accepted():
    from diffusers import FluxPipeline, StableDiffusion3Pipeline, ZImagePipeline

    from evalrun.tasks.text2img import TextToImage

    task = TextToImage()
    task.check_pipeline(StableDiffusion3Pipeline, compose("model=tiny_sd3", "guidance_scale=1.5",
                                                          "prompts.negative_prompt=blurry"))
    task.check_pipeline(ZImagePipeline, compose("model=z_image_turbo", *SMOKE, "model.guidance=cfg",
                                                 "guidance_scale=0.5", "prompts.negative_prompt=blurry"))
    task.check_pipeline(FluxPipeline, compose("model=tiny_flux"))  # distilled, with a guidance embedding
    task.check_pipeline(FluxPipeline, compose("model=flux_schnell", *SMOKE))  # none, without one


def _image(pipe, **call):
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt=["a red cube"], generator=[torch.Generator().manual_seed(0)], num_inference_steps=2, height=32,
               width=32, output_type="np", **call)
    return out.images


@pytest.mark.parametrize("twin, cls_name, extra", [
    ("evalrun/tiny-sd3", "StableDiffusion3Pipeline", {}),
    ("evalrun/tiny-z-image", "ZImagePipeline", {}),
])
def test_the_cfg_threshold_is_where_the_negative_prompt_starts_to_act(twin, cls_name, extra):
    """At the threshold cfg_threshold reads from the source the negative prompt changes no pixel; above it, it does."""
    import diffusers

    from evalrun.tasks.guidance import cfg_threshold

    cls = getattr(diffusers, cls_name)
    threshold = cfg_threshold(cls)
    pipe = cls.from_pretrained(tiny.resolve(twin))
    for scale, acts in ((threshold, False), (threshold + 1.5, True)):
        plain = _image(pipe, guidance_scale=scale, **extra)
        negative = _image(pipe, guidance_scale=scale, negative_prompt=["blurry"], **extra)
        assert (not np.array_equal(plain, negative)) is acts, (cls_name, scale)


def test_flux_without_a_guidance_embedding_ignores_guidance_scale():
    """What the flux_schnell refusal rests on: FluxPipeline makes the same pixels at any guidance_scale."""
    from diffusers import FluxPipeline

    from evalrun.tasks.guidance import gates_guidance_on_embedding, guidance_embeds

    assert gates_guidance_on_embedding(FluxPipeline)
    assert guidance_embeds(compose("model=flux_schnell", *SMOKE).model) is False
    assert guidance_embeds(compose("model=tiny_flux").model) is True
    pipe = FluxPipeline.from_pretrained(tiny.resolve("evalrun/tiny-flux-schnell"))
    assert np.array_equal(_image(pipe, guidance_scale=0.0), _image(pipe, guidance_scale=5.0))


def test_flux2_truncation_counts_what_the_pipeline_cuts():
    """FLUX.2's tokenizer component is a PixtralProcessor: counted through it, on the system message and prompt
    as Flux2Pipeline formats them; the count agrees with the attention mask its encode_prompt tokenizes."""
    from diffusers import Flux2Pipeline

    from evalrun.truncation import text_truncation

    prompts = ["a red cube", "a photograph of " + "x" * 70, "an astronaut riding a horse on the moon, " * 3]
    pipe = Flux2Pipeline.from_pretrained(tiny.resolve("evalrun/tiny-flux2"))
    kept, tokenize = [], pipe.tokenizer.apply_chat_template

    def spy(*args, **kwargs):  # what the pipeline tokenized, after its own truncation
        out = tokenize(*args, **kwargs)
        kept.append(int(out["attention_mask"].sum()))
        return out

    pipe.tokenizer.apply_chat_template = spy
    full = []
    for prompt in prompts:
        pipe.encode_prompt(prompt, max_sequence_length=512)  # longer than every prompt
        full.append(kept[-1])
    limit = sorted(full)[1]  # the middle prompt fits exactly, the longest is cut
    cut = 0
    for prompt, length in zip(prompts, full):
        pipe.encode_prompt(prompt, max_sequence_length=limit)
        cut += kept[-1] < length
    counts = text_truncation(compose("model=flux2_dev", "debug=smoke").model, Flux2Pipeline, prompts, limit)
    assert counts == {"tokenizer": {"max_tokens": limit, "truncated": 1, "prompts": 3}} and cut == 1
