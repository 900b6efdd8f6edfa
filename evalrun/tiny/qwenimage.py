"""Tiny Qwen-Image (``QwenImagePipeline``) and Qwen-Image-Edit (``QwenImageEditPipeline``).

MMDiT with 2x2 patches, a Qwen2.5-VL text encoder (the edit model also feeds it the input image),
and the Wan-style causal 3D VAE (16 channels, 8x). The tokenizer splits the pipelines' fixed
prompt templates into as many tokens as the real one (34 and 64), so the pipelines drop exactly
the template from the hidden states, as with the real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.tokenizers import write_qwen2_tokenizer

# Qwen/Qwen-Image (and Qwen/Qwen-Image-Edit), scheduler/scheduler_config.json: exponential time
# shift with mu = calculate_shift(image_seq_len, 256, 8192, 0.5, 0.9), terminal sigma 0.02.
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 0.9,
    "base_image_seq_len": 256, "max_image_seq_len": 8192, "shift_terminal": 0.02, "time_shift_type": "exponential",
    "invert_sigmas": False, "stochastic_sampling": False, "use_karras_sigmas": False,
    "use_exponential_sigmas": False, "use_beta_sigmas": False,
}


def _templates() -> tuple[str, str]:
    """The pipelines' own prompt templates (instance attributes: read from empty pipelines)."""
    from diffusers import QwenImageEditPipeline, QwenImagePipeline

    return (QwenImagePipeline(None, None, None, None, None).prompt_template_encode,
            QwenImageEditPipeline(None, None, None, None, None, None).prompt_template_encode)


def _components(target: Path):
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2TokenizerFast

    write_qwen2_tokenizer(target / "tokenizer", templates=_templates())
    tokenizer = Qwen2TokenizerFast.from_pretrained(target / "tokenizer")
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 2, "rope_theta": 1000000.0,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16,
                       "fullatt_block_indexes": [1], "window_size": 112},
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **ids,
    )
    torch.manual_seed(0)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=2, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True, True]).eval()
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=3,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    return dict(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG), vae=vae, text_encoder=text_encoder,
                tokenizer=tokenizer, transformer=transformer)


def build_tiny_qwenimage(target: Path) -> None:
    """Qwen-Image layout at toy width; sizes are multiples of 16 (default 1024: pass height/width)."""
    from diffusers import QwenImagePipeline

    QwenImagePipeline(**_components(target)).save_pretrained(target)


def build_tiny_qwenimage_edit(target: Path) -> None:
    """Qwen-Image-Edit: the same weights plus a ``Qwen2VLProcessor`` (patch 14, merge 2).

    The pipeline resizes every input image to about 1024x1024 for both the VAE and the
    vision-language encoder, whatever the output size. To keep the twin fast, its image processor
    caps the VL encoder's input at 112x112 pixels (``max_pixels``; the real one allows ~12.8 MP),
    so the VL sequence is short; the VAE path still sees 1024x1024 (4096 image tokens).
    """
    from diffusers import QwenImageEditPipeline
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    components = _components(target)
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14,
                                            temporal_patch_size=2, merge_size=2)
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=components["tokenizer"],
                                 video_processor=Qwen2VLVideoProcessor())
    QwenImageEditPipeline(processor=processor, **components).save_pretrained(target)
