"""Tiny Lumina-Image 2.0 (``Lumina2Pipeline``): unified next-DiT, Gemma-2 text encoder, FLUX VAE."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.parts import FLUX_VAE, kl_vae
from evalrun.tiny.sana import gemma2_text_encoder

# Alpha-VLLM/Lumina-Image-2.0: FlowMatchEulerDiscreteScheduler. NOT verified against the hub file
# (no copy reachable offline): shift 6.0 is recalled, not read. The pipeline passes mu, which the
# scheduler ignores unless use_dynamic_shifting is set.
SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "shift": 6.0}


def build_tiny_lumina2(target: Path) -> None:
    """Lumina 2 layout at toy width: Gemma-2 (second-to-last hidden states, system prompt prepended),
    16-channel 8x VAE, 2x2 patches. Sizes are multiples of 16."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    tokenizer, text_encoder = gemma2_text_encoder(target / "tokenizer")
    torch.manual_seed(0)
    transformer = Lumina2Transformer2DModel(
        sample_size=4, patch_size=2, in_channels=FLUX_VAE["latent_channels"], hidden_size=16, num_layers=2,
        num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1, multiple_of=16, ffn_dim_multiplier=None,
        norm_eps=1e-5, scaling_factor=1.0, axes_dim_rope=[4, 2, 2], axes_lens=[1024, 64, 64],
        cap_feat_dim=text_encoder.config.hidden_size,
    )
    pipe = Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
                           vae=kl_vae(**FLUX_VAE, quant_conv=False), text_encoder=text_encoder, tokenizer=tokenizer)
    pipe.save_pretrained(target)
