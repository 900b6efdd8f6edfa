"""Pieces shared by the twin builders: tiny text encoders and the real checkpoints' VAE constants."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.tokenizers import write_clip_tokenizer, write_t5_tokenizer

# VAE latent statistics of the real checkpoints (vae/config.json), so that latents are scaled the
# way the real pipeline scales them. Channel counts and the 8x downsampling are kept too.
SDXL_VAE = {"latent_channels": 4, "scaling_factor": 0.13025}
SD3_VAE = {"latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609}
FLUX_VAE = {"latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159}


def clip_text_encoder(directory: Path, *, with_projection: bool, hidden_size: int = 32, projection_dim: int = 32,
                      pad_token: str = "<|endoftext|>", hidden_act: str = "quick_gelu"):
    """A tokenizer written into ``directory`` and a seeded 2-layer CLIP text encoder sized to it."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    write_clip_tokenizer(directory, pad_token=pad_token)
    tokenizer = CLIPTokenizer.from_pretrained(directory)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, projection_dim=projection_dim, hidden_act=hidden_act,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    return tokenizer, model.eval()


def t5_text_encoder(directory: Path, *, d_model: int = 32, model_max_length: int = 512):
    """A character-level T5 tokenizer and a seeded 2-layer T5 encoder (T5 v1.1 layout: gated GELU)."""
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    write_t5_tokenizer(directory, model_max_length=model_max_length)
    tokenizer = T5TokenizerFast.from_pretrained(directory)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
        decoder_start_token_id=0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        dropout_rate=0.0,
    )
    torch.manual_seed(0)
    return tokenizer, T5EncoderModel(config).eval()


def kl_vae(latent_channels: int, scaling_factor: float, shift_factor: float | None = None, *,
           quant_conv: bool = True, blocks: int = 4):
    """A seeded ``AutoencoderKL`` with the real ``blocks``-level layout (8x downsampling for 4) and tiny widths."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8,) * blocks,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1, norm_num_groups=4, sample_size=64, scaling_factor=scaling_factor,
        shift_factor=shift_factor, use_quant_conv=quant_conv, use_post_quant_conv=quant_conv,
    ).eval()
