"""Tiny Stable Diffusion XL (``StableDiffusionXLPipeline``): UNet with text-time conditioning, two CLIPs."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.parts import SDXL_VAE, clip_text_encoder, kl_vae

# stabilityai/stable-diffusion-xl-base-1.0, scheduler/scheduler_config.json.
SCHEDULER_CONFIG = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading",
    "use_karras_sigmas": False, "trained_betas": None,
}

# stabilityai/sdxl-turbo, scheduler/scheduler_config.json: Euler ancestral, trailing spacing (1-4 steps).
TURBO_SCHEDULER_CONFIG = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "trailing", "trained_betas": None,
}


def build_tiny_sdxl_turbo(target: Path) -> None:
    """The tiny SDXL with SDXL Turbo's own scheduler, so a smoke run rehearses the sampler turbo runs."""
    from diffusers import EulerAncestralDiscreteScheduler

    build_tiny_sdxl(target, scheduler=EulerAncestralDiscreteScheduler(**TURBO_SCHEDULER_CONFIG))


def build_tiny_sdxl(target: Path, scheduler=None) -> None:
    """SDXL layout at toy width: 8x VAE (4 latent channels), CLIP-L-like + CLIP-G-like encoders.

    Default size 32x32 (UNet ``sample_size=4`` latents); ``force_zeros_for_empty_prompt`` as the
    real base model (an empty negative prompt becomes zero embeddings).
    """
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer, text_encoder = clip_text_encoder(target / "tokenizer", with_projection=False)
    # The second encoder (OpenCLIP bigG in the real model) pads with "!" and has a projection.
    tokenizer_2, text_encoder_2 = clip_text_encoder(target / "tokenizer_2", with_projection=True, pad_token="!",
                                                    hidden_act="gelu")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 1),
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + text_encoder_2.config.projection_dim,
        cross_attention_dim=text_encoder.config.hidden_size + text_encoder_2.config.hidden_size, norm_num_groups=8,
    )
    pipe = StableDiffusionXLPipeline(
        vae=kl_vae(**SDXL_VAE), text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler or EulerDiscreteScheduler(**SCHEDULER_CONFIG),
        force_zeros_for_empty_prompt=True, add_watermarker=False,
    )
    pipe.save_pretrained(target)
