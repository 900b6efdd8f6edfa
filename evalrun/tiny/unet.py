"""Tiny class-conditional DiT and unconditional DDPM (UNet2DModel), random weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# A few real ImageNet ids so the default class words work with the tiny DiT as with DiT-XL-2.
_TINY_REAL_LABELS = {0: "tench, Tinca tinca", 1: "goldfish, Carassius auratus", 88: "macaw",
                     207: "golden retriever", 281: "tabby, tabby cat", 417: "balloon", 948: "Granny Smith",
                     980: "volcano"}


def build_tiny_dit(target: Path) -> None:
    """Tiny DiT (2 layers, 8x8 latents) + tiny VAE (32x32 images), 1000 classes."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=1000)
    vae = AutoencoderKL(block_out_channels=(16, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
                        norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3)
    DiTPipeline(transformer, vae, DDIMScheduler(num_train_timesteps=1000)).save_pretrained(target)
    # save_pretrained does not keep id2label; the hub's DiT repos store it in model_index.json,
    # from where from_pretrained passes it back to the pipeline. Do the same.
    index = json.loads((target / "model_index.json").read_text())
    index["id2label"] = {str(i): _TINY_REAL_LABELS.get(i, f"class {i}") for i in range(1000)}
    (target / "model_index.json").write_text(json.dumps(index, indent=2))


def build_tiny_ddpm(target: Path) -> None:
    """Tiny unconditional UNet2DModel (32x32 RGB, CIFAR-10's size) with a DDPM scheduler."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(target)
