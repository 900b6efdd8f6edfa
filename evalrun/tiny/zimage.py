"""Tiny Z-Image (``ZImagePipeline``): single-stream DiT, Qwen3 text encoder (chat template), FLUX VAE."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.parts import FLUX_VAE, kl_vae
from evalrun.tiny.tokenizers import QWEN3_CHAT_TEMPLATE, write_qwen2_tokenizer

# Tongyi-MAI/Z-Image-Turbo, scheduler/scheduler_config.json: static shift 3.0. The pipeline still
# computes mu and passes linspace(1, 1/N, N) sigmas, which the scheduler shifts by 3.0.
SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}


def build_tiny_zimage(target: Path) -> None:
    """Z-Image layout at toy width: 16-channel 8x VAE with FLUX's scaling, 2x2 patches, a Qwen3
    encoder whose second-to-last hidden states (unpadded, one length per prompt) are the caption."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3Model

    write_qwen2_tokenizer(target / "tokenizer", chat_template=QWEN3_CHAT_TEMPLATE)
    tokenizer = Qwen2TokenizerFast.from_pretrained(target / "tokenizer")
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    text_encoder = Qwen3Model(config).eval()
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=FLUX_VAE["latent_channels"], dim=32, n_layers=2,
        n_refiner_layers=1, n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16,
        rope_theta=256.0, t_scale=1000.0, axes_dims=[8, 4, 4], axes_lens=[1024, 64, 64],
    )
    # Created with torch.empty in the model: fix them, or saved weights differ between machines.
    with torch.no_grad():
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
                          vae=kl_vae(**FLUX_VAE, quant_conv=False), text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer)
    pipe.save_pretrained(target)
