"""Tiny FLUX.1 (``FluxPipeline``, ``FluxKontextPipeline``) and Chroma (``ChromaPipeline``)."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.parts import FLUX_VAE, clip_text_encoder, kl_vae, t5_text_encoder

# black-forest-labs/FLUX.1-dev (and FLUX.1-Kontext-dev), scheduler/scheduler_config.json:
# resolution-dependent shift, mu = calculate_shift(image_seq_len, 256, 4096, 0.5, 1.15).
DEV_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
    "base_image_seq_len": 256, "max_image_seq_len": 4096,
}
# black-forest-labs/FLUX.1-schnell: the same keys, shift 1.0 and no dynamic shifting.
SCHNELL_SCHEDULER_CONFIG = {**DEV_SCHEDULER_CONFIG, "shift": 1.0, "use_dynamic_shifting": False}


def _flux_transformer(guidance_embeds: bool, pooled_projection_dim: int, joint_attention_dim: int):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=4 * FLUX_VAE["latent_channels"], num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=joint_attention_dim,
        pooled_projection_dim=pooled_projection_dim, guidance_embeds=guidance_embeds, axes_dims_rope=[4, 4, 8],
    )


def build_tiny_flux(target: Path, *, schnell: bool = False, kontext: bool = False) -> None:
    """FLUX.1 layout at toy width: CLIP-L-like (pooled) + T5 (sequence), 16-channel 8x VAE, 2x2 packed
    latents (sizes must be multiples of 16; default 32x32 here needs ``height``/``width`` passed,
    since the pipeline defaults to 1024). dev-like by default: ``guidance_embeds=True`` and dynamic
    shifting; ``schnell=True`` gives the distilled layout (no guidance embedding, shift 1.0).
    ``kontext=True`` saves the same weights as a ``FluxKontextPipeline`` (FLUX.1-Kontext-dev's
    transformer has FLUX.1-dev's architecture; the reference image enters as extra tokens)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxPipeline

    tokenizer, text_encoder = clip_text_encoder(target / "tokenizer", with_projection=False)
    tokenizer_2, text_encoder_2 = t5_text_encoder(target / "tokenizer_2", d_model=32, model_max_length=512)
    transformer = _flux_transformer(not schnell, text_encoder.config.hidden_size, text_encoder_2.config.d_model)
    config = SCHNELL_SCHEDULER_CONFIG if schnell else DEV_SCHEDULER_CONFIG
    cls = FluxKontextPipeline if kontext else FluxPipeline
    pipe = cls(
        scheduler=FlowMatchEulerDiscreteScheduler(**config), vae=kl_vae(**FLUX_VAE, quant_conv=False),
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2,
        transformer=transformer, image_encoder=None, feature_extractor=None,
    )
    pipe.save_pretrained(target)


def build_tiny_flux_schnell(target: Path) -> None:
    build_tiny_flux(target, schnell=True)


def build_tiny_flux_kontext(target: Path) -> None:
    build_tiny_flux(target, kontext=True)


# lodestones/Chroma1-HD: NOT verified against the hub file (no copy reachable offline). Chroma is
# derived from FLUX.1-schnell; the twin uses schnell's keys. The pipeline computes mu and passes
# it, which matters only if use_dynamic_shifting is set.
CHROMA_SCHEDULER_CONFIG = SCHNELL_SCHEDULER_CONFIG


def build_tiny_chroma(target: Path) -> None:
    """Chroma layout at toy width: FLUX-like MMDiT without CLIP or guidance embedding (modulations
    from a small approximator), T5 with attention mask, FLUX VAE; real CFG with negative prompts."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tokenizer, text_encoder = t5_text_encoder(target / "tokenizer", d_model=32, model_max_length=512)
    torch.manual_seed(0)
    transformer = ChromaTransformer2DModel(
        patch_size=1, in_channels=4 * FLUX_VAE["latent_channels"], num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text_encoder.config.d_model,
        axes_dims_rope=[4, 4, 8], approximator_hidden_dim=32, approximator_layers=1, approximator_num_channels=16,
    )
    pipe = ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**CHROMA_SCHEDULER_CONFIG),
                          vae=kl_vae(**FLUX_VAE, quant_conv=False), text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer, image_encoder=None, feature_extractor=None)
    pipe.save_pretrained(target)
