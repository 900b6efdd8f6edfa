"""Class-conditional (DiT) and unconditional (DDPM/DDIM) tasks: their prompt records and tiny models.

Class-conditional "prompts" are ImageNet class words, mapped to label ids with the
pipeline's own ``get_label_ids``; or N random classes (seeded), or all classes. An
unconditional run has no prompts: it draws ``num_images`` samples, each with its own
generator seeded from (seed, sample index).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from evalrun.errors import ConfigError, EvalrunError
from evalrun.prompts import register_source

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


# ----------------------------------------------------------------------------- records
def _classes_source(cfg: DictConfig) -> list[dict[str, Any]]:
    """Words now; random/all classes as ids (their words are looked up once the pipeline loads)."""
    words = OmegaConf.to_container(cfg.words) if cfg.get("words") is not None else None
    n_random, all_classes = cfg.get("random"), bool(cfg.get("all"))
    if sum([bool(words), n_random is not None, all_classes]) != 1:
        raise ConfigError("prompts=classes needs exactly one of prompts.words=[...], prompts.random=N or prompts.all=true")
    if words:  # prompt_id becomes the class id once the pipeline maps the word
        return [{"prompt_id": i, "prompt": str(w), "category": None, "challenge": None} for i, w in enumerate(words)]
    num_classes = int(cfg.get("num_classes") or 1000)
    if all_classes:
        ids = list(range(num_classes))
    else:
        if not isinstance(n_random, int) or not 1 <= n_random <= num_classes:
            raise ConfigError(f"prompts.random must be an integer in 1..{num_classes}, got {n_random!r}")
        ids = sorted(np.random.default_rng(int(cfg.get("random_seed") or 0)).choice(num_classes, n_random, replace=False))
    # prompt_id = class id: a class gets the same noise whichever subset of classes a run uses.
    return [{"prompt_id": int(i), "prompt": None, "class_id": int(i), "category": None, "challenge": None} for i in ids]


register_source("classes", _classes_source)


def prepare_class_records(pipe, records: list[dict[str, Any]], cfg: DictConfig) -> list[dict[str, Any]]:
    """Map words to ids with ``pipe.get_label_ids`` and ids back to a readable word."""
    labels: dict[str, int] = getattr(pipe, "labels", {}) or {}
    first_word: dict[int, str] = {}
    for word, idx in labels.items():
        first_word.setdefault(idx, word)
    out = []
    for rec in records:
        rec = dict(rec)
        if rec.get("class_id") is None:
            try:
                rec["class_id"] = int(pipe.get_label_ids([rec["prompt"]])[0])
                # Like random/all classes: the class id is the prompt id, so a class keeps its
                # noise (and per-image pairing) whatever other words a run lists.
                rec["prompt_id"] = rec["class_id"]
            except ValueError:
                close = [w for w in labels if rec["prompt"].lower() in w.lower()][:10]
                raise EvalrunError(f"{rec['prompt']!r} is not a class word of this model"
                                   f"{'; did you mean: ' + ', '.join(close) if close else ''} "
                                   f"(the words are those of the checkpoint's id2label)") from None
        if rec.get("prompt") is None:
            rec["prompt"] = first_word.get(rec["class_id"], f"class {rec['class_id']}")
        out.append(rec)
    return out


def unconditional_records(pipe, records: list[dict[str, Any]], cfg: DictConfig) -> list[dict[str, Any]]:
    """``num_images`` prompt-less samples; sample i is seeded from (seed, i, 0)."""
    n = cfg.get("num_images")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_images must be a positive integer for unconditional models, got {n!r}")
    return [{"prompt_id": i, "prompt": "", "category": None, "challenge": None} for i in range(n)]
