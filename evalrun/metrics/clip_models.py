"""Load a CLIP model once per process and encode images and texts in batches.

Every CLIP-based metric (CLIP score, directional similarity, CMMD) goes through here,
so a sweep loads each CLIP model once, and all of them embed the same way:

- images: uint8 pixels through the checkpoint's own ``CLIPImageProcessor``;
- texts: the tokenizer's own truncation to ``model_max_length``, which keeps the
  end-of-text token (torchmetrics cuts the token list instead and loses it, #2883);
- embeddings: ``vision_model(...).pooler_output`` -> ``visual_projection`` (and the text
  analogue), which is what ``CLIPModel`` computes in transformers 4.x and 5.x alike,
  whatever ``get_image_features`` happens to return in a given release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evalrun import tiny
from evalrun.config import full_float32
from evalrun.errors import load_error

_CACHE: dict[tuple[str, str, str], "ClipBundle"] = {}


@dataclass
class ClipBundle:
    name: str
    model: Any
    processor: Any
    device: torch.device
    dtype: torch.dtype

    @property
    def max_length(self) -> int:
        return int(self.processor.tokenizer.model_max_length)

    def info(self) -> dict[str, Any]:
        # The image processor class matters: transformers picks a torchvision or a PIL backend
        # depending on what is installed, and their resizes differ slightly.
        return {"clip_model": self.name, "clip_dtype": str(self.dtype).replace("torch.", ""),
                "clip_image_size": int(self.model.config.vision_config.image_size),
                "clip_image_processor": type(self.processor.image_processor).__name__}


def load_clip(name_or_path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
              key: str = "clip_model") -> ClipBundle:
    """Load (or reuse) ``CLIPModel`` + ``CLIPProcessor`` from a hub id or a local directory.

    ``key`` is the config key a user sets to point at a local copy (named in the error)."""
    from transformers import CLIPModel, CLIPProcessor

    device = torch.device(device)
    cache_key = (str(name_or_path), str(device), str(dtype))
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    source = tiny.resolve(name_or_path)
    try:
        model = CLIPModel.from_pretrained(source, dtype=dtype)
        processor = CLIPProcessor.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise load_error("CLIP model", str(name_or_path), exc, key) from None
    bundle = ClipBundle(str(name_or_path), model.to(device).eval(), processor, device, dtype)
    _CACHE[cache_key] = bundle
    return bundle


def count_truncated(bundle: ClipBundle, texts: list[str]) -> list[bool]:
    """Which texts are longer than the CLIP context (they are truncated, end token kept)."""
    lengths = [len(ids) for ids in bundle.processor.tokenizer(texts, truncation=False)["input_ids"]]
    return [n > bundle.max_length for n in lengths]


@torch.no_grad()
def encode_texts(bundle: ClipBundle, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Projected (unnormalised) text embeddings, float32 on CPU, one row per text."""
    out = []
    for start in range(0, len(texts), batch_size):
        tok = bundle.processor.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                         max_length=bundle.max_length, return_tensors="pt")
        with full_float32():
            hidden = bundle.model.text_model(input_ids=tok["input_ids"].to(bundle.device),
                                             attention_mask=tok["attention_mask"].to(bundle.device))
        out.append(bundle.model.text_projection(hidden.pooler_output).float().cpu())
    return torch.cat(out) if out else torch.empty(0, bundle.model.config.projection_dim)


@torch.no_grad()
def encode_images(bundle: ClipBundle, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Projected (unnormalised) image embeddings of uint8 (N, 3, H, W) images, float32 on CPU."""
    if images.dtype != torch.uint8:
        raise ValueError(f"encode_images wants uint8 images, got {images.dtype}")
    out = []
    for start in range(0, len(images), batch_size):
        chunk = [np.ascontiguousarray(img.permute(1, 2, 0).numpy()) for img in images[start:start + batch_size]]
        pixels = bundle.processor.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
        with full_float32():  # no TF32 on GPUs: the recorded dtype is what ran
            hidden = bundle.model.vision_model(pixel_values=pixels.to(bundle.device, bundle.dtype))
        out.append(bundle.model.visual_projection(hidden.pooler_output).float().cpu())
    return torch.cat(out) if out else torch.empty(0, bundle.model.config.projection_dim)


def clear_cache() -> None:
    _CACHE.clear()
