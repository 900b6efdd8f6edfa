"""Tiny Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``): MMDiT, CLIP-L + CLIP-G + T5."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.parts import SD3_VAE, clip_text_encoder, kl_vae, t5_text_encoder

# stabilityai/stable-diffusion-3-medium-diffusers and the 3.5 medium/large checkpoints ship the
# same scheduler_config.json: FlowMatchEulerDiscreteScheduler, shift 3.0, no dynamic shifting.
SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0}


def build_tiny_sd3(target: Path) -> None:
    """SD3 layout at toy width: two CLIPs (pooled 32+32), T5 with d_model 64 (= joint_attention_dim,
    wide enough for the concatenated CLIP embeddings that the pipeline zero-pads to T5's width),
    16-channel 8x VAE with SD3's scaling/shift, patch size 2. Default size 32x32."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer, text_encoder = clip_text_encoder(target / "tokenizer", with_projection=True)
    tokenizer_2, text_encoder_2 = clip_text_encoder(target / "tokenizer_2", with_projection=True, pad_token="!",
                                                    hidden_act="gelu")
    tokenizer_3, text_encoder_3 = t5_text_encoder(target / "tokenizer_3", d_model=64, model_max_length=512)
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=4, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32,
        pooled_projection_dim=text_encoder.config.projection_dim + text_encoder_2.config.projection_dim,
        pos_embed_max_size=16,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        vae=kl_vae(**SD3_VAE, quant_conv=False), text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3, image_encoder=None, feature_extractor=None,
    )
    pipe.save_pretrained(target)
