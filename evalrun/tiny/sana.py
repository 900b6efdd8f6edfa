"""Tiny Sana (``SanaPipeline``): linear-attention DiT, Gemma-2 text encoder, 32x DC-AE."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.tokenizers import write_gemma_tokenizer

# Efficient-Large-Model/Sana_1600M_1024px_diffusers: DPM-Solver++ on flow sigmas, flow_shift 3.0
# (scripts/convert_sana_to_diffusers.py: default scheduler "flow-dpm_solver", shift 3.0 below 4096px).
SCHEDULER_CONFIG = {"flow_shift": 3.0, "use_flow_sigmas": True, "prediction_type": "flow_prediction"}


def gemma2_text_encoder(directory: Path, hidden_size: int = 16):
    """Character-level Gemma tokenizer and a seeded 1-layer ``Gemma2Model`` (Sana, Lumina 2)."""
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizerFast

    write_gemma_tokenizer(directory)
    tokenizer = GemmaTokenizerFast.from_pretrained(directory)
    config = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        sliding_window=4096, attn_implementation="eager",
    )
    torch.manual_seed(0)
    return tokenizer, Gemma2Model(config).eval()


def dc_ae(latent_channels: int = 32, scaling_factor: float = 0.41407):
    """DC-AE f32c32 layout (6 stages: 32x downsampling, 32 latent channels) at widths 8..32."""
    from diffusers import AutoencoderDC

    torch.manual_seed(0)
    blocks = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    widths = (8, 8, 8, 16, 32, 32)  # the deepest width must be a multiple of latent_channels
    return AutoencoderDC(
        in_channels=3, latent_channels=latent_channels, attention_head_dim=4,
        encoder_block_types=blocks, decoder_block_types=blocks,
        encoder_block_out_channels=widths, decoder_block_out_channels=widths,
        encoder_layers_per_block=(1,) * 6, decoder_layers_per_block=(1,) * 6,
        encoder_qkv_multiscales=((),) * 3 + ((5,),) * 3, decoder_qkv_multiscales=((),) * 3 + ((5,),) * 3,
        upsample_block_type="interpolate", downsample_block_type="Conv", decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=scaling_factor,
    ).eval()


def build_tiny_sana(target: Path) -> None:
    """Sana layout at toy width. ``sample_size=16`` is the smallest value resolution binning accepts
    (512px bins): pass ``use_resolution_binning=False`` to generate at the requested 64x64
    (2x2 latents); the pipeline's own default size is 1024x1024."""
    from diffusers import DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel

    tokenizer, text_encoder = gemma2_text_encoder(target / "tokenizer")
    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(
        in_channels=32, out_channels=32, num_layers=2, num_attention_heads=2, attention_head_dim=8,
        num_cross_attention_heads=2, cross_attention_head_dim=8, cross_attention_dim=16,
        caption_channels=text_encoder.config.hidden_size, mlp_ratio=2.5, sample_size=16, patch_size=1,
    )
    pipe = SanaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=dc_ae(), transformer=transformer,
                        scheduler=DPMSolverMultistepScheduler(**SCHEDULER_CONFIG))
    pipe.save_pretrained(target)
