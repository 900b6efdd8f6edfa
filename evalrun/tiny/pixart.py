"""Tiny PixArt-Sigma (``PixArtSigmaPipeline``): DiT with learned sigma, T5 text encoder, SDXL VAE."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.parts import SDXL_VAE, kl_vae, t5_text_encoder

# PixArt-alpha/PixArt-Sigma-XL-2-1024-MS: DPMSolverMultistepScheduler with its defaults
# (scripts/convert_pixart_sigma_to_diffusers.py builds it as DPMSolverMultistepScheduler()):
# DPM-Solver++ order 2, epsilon prediction, linear betas 1e-4..0.02, linspace spacing.
SCHEDULER_CONFIG: dict = {}


def build_tiny_pixart_sigma(target: Path) -> None:
    """PixArt-Sigma layout at toy width: patch 2, 8 output channels (epsilon + learned variance,
    the pipeline keeps the first 4), T5 with the real 300-token default. ``sample_size=32`` is the
    smallest value resolution binning accepts (256px bins, also the default size); pass
    ``use_resolution_binning=False`` to generate at 32x32."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer, text_encoder = t5_text_encoder(target / "tokenizer", d_model=32, model_max_length=300)
    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=32, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
        caption_channels=text_encoder.config.d_model, in_channels=4, out_channels=8, cross_attention_dim=24,
        attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, interpolation_scale=None, use_additional_conditions=False,
    )
    pipe = PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=kl_vae(**SDXL_VAE),
                               transformer=transformer, scheduler=DPMSolverMultistepScheduler(**SCHEDULER_CONFIG))
    pipe.save_pretrained(target)
