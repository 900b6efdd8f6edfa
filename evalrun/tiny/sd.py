"""Tiny Stable Diffusion (text-to-image and InstructPix2Pix layouts) and a tiny CLIP, random weights.

Built from configs as diffusers' ``get_dummy_components`` does; the CLIP tokenizer is a
character-level BPE written in code, since no tokenizer can be downloaded here.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


# ----------------------------------------------------------------------------- tokenizer
def write_char_tokenizer(directory: Path, model_max_length: int = 77) -> None:
    """A character-level CLIP BPE tokenizer (no merges), small enough to build in code."""
    from transformers import CLIPTokenizer

    chars = sorted(set(string.printable) - set(string.whitespace))
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    # Loading from files (not constructor kwargs) works across transformers 4.x and 5.x,
    # whose CLIPTokenizer constructors take different argument names.
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": model_max_length, "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer"}))
    CLIPTokenizer.from_pretrained(directory).save_pretrained(directory)


def _text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, projection_dim=32,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )


# ----------------------------------------------------------------------------- builders
def build_tiny_sd(target: Path, in_channels: int = 4, v_prediction: bool = False) -> None:
    """Tiny StableDiffusion: UNet 32/64 channels, 2-layer CLIP text encoder, tiny VAE.

    ``in_channels=8`` gives the InstructPix2Pix layout (latents + image latents); ``v_prediction``, SD 2.x 768-v's
    scheduler (the DDIM config with ``prediction_type: v_prediction`` stabilityai/stable-diffusion-2-1 ships).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    write_char_tokenizer(target / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(target / "tokenizer")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=in_channels,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    text_encoder = CLIPTextModel(_text_config(len(tokenizer)))
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
        steps_offset=1, set_alpha_to_one=False, num_train_timesteps=1000,
    ) if not v_prediction else DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1,
        set_alpha_to_one=False, num_train_timesteps=1000, prediction_type="v_prediction",
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(target)


def build_tiny_sd_v(target: Path) -> None:
    """SD 2.x 768-v's layout at toy width (``model=sd21 debug=smoke``): a v-prediction scheduler."""
    build_tiny_sd(target, v_prediction=True)


def build_tiny_pix2pix(target: Path) -> None:
    """The InstructPix2Pix layout: an 8-channel UNet (noise latents + input-image latents)."""
    build_tiny_sd(target, in_channels=8)


def build_tiny_clip(target: Path) -> None:
    """Tiny CLIPModel + CLIPProcessor (32x32 images, character tokenizer)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer, CLIPVisionConfig

    write_char_tokenizer(target)
    tokenizer = CLIPTokenizer.from_pretrained(target)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        image_size=32, patch_size=8, projection_dim=32,
    )
    config = CLIPConfig(text_config=_text_config(len(tokenizer)).to_dict(), vision_config=vision.to_dict(),
                        projection_dim=32)
    torch.manual_seed(0)
    model = CLIPModel(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    model.save_pretrained(target)
