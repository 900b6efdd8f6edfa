"""CLIP image and text towers as a feature extractor: CLIP score, the edit metrics and CMMD use it.

Every CLIP-based metric goes through here, so a sweep loads each CLIP model once and all of
them embed the same way:

- images: uint8 pixels through the checkpoint's own ``CLIPImageProcessor``;
- texts: the tokenizer's own truncation to ``model_max_length``, which keeps the end-of-text
  token (torchmetrics cuts the token list instead and loses it, #2883);
- embeddings: ``vision_model(...).pooler_output`` -> ``visual_projection`` (and the text
  analogue), which is what ``CLIPModel`` computes in transformers 4.x and 5.x alike, whatever
  ``get_image_features`` happens to return in a given release.
"""

from __future__ import annotations

import pickle
from typing import Any

import evalrun.tiny as tiny
from evalrun.errors import load_error
from evalrun.metrics.features.base import FeatureExtractor


class CLIPImageText(FeatureExtractor):
    """uint8 images -> {"embedding": projected, unnormalised image embeddings}; texts via ``encode_texts``."""

    name = "clip"

    def __init__(self, device: Any = "cpu", path: str = "openai/clip-vit-base-patch16", batch_size: int = 64,
                 key: str = "clip_model") -> None:
        super().__init__(device, batch_size)
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.model_name = str(path)
        self.dtype = torch.float32
        self.source = tiny.resolve(self.model_name)
        try:
            model = CLIPModel.from_pretrained(self.source, dtype=self.dtype)
            self.processor = CLIPProcessor.from_pretrained(self.source)
        except (OSError, ValueError, pickle.UnpicklingError) as exc:  # a pickled .bin refused by weights_only
            raise load_error("CLIP model", self.model_name, exc, key, local_dir=self.source) from None
        self.model = model.to(self.device).eval()
        self._weights: dict[str, Any] | None = None

    @property
    def max_length(self) -> int:
        return int(self.processor.tokenizer.model_max_length)

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def layers(self) -> dict[str, int]:
        return {"embedding": self.dim}

    def preprocessing(self) -> dict[str, Any]:
        # The image processor class matters: transformers picks a torchvision or a PIL backend
        # depending on what is installed, and their resizes differ slightly.
        proc = self.processor.image_processor
        return {"input": "uint8", "processor": type(proc).__name__, "config": proc.to_dict(),
                "embedding": "visual_projection(vision_model.pooler_output), unnormalised float32"}

    def weights_identity(self) -> dict[str, Any]:
        if self._weights is None:
            from evalrun.hashing import pretrained_files_identity, tensors_sha256

            found = pretrained_files_identity(self.source)
            self._weights = found or {"tensors_sha256": tensors_sha256(
                {"vision_model": self.model.vision_model, "visual_projection": self.model.visual_projection,
                 "text_model": self.model.text_model, "text_projection": self.model.text_projection})}
        return self._weights

    def versions(self) -> dict[str, str]:
        import transformers

        return {**super().versions(), "transformers": transformers.__version__}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "clip_model": self.model_name, "clip_dtype": str(self.dtype).replace("torch.", ""),
                "clip_image_size": int(self.model.config.vision_config.image_size),
                "clip_image_processor": type(self.processor.image_processor).__name__,
                "clip_text_max_length": self.max_length, "clip_weights": self.weights_identity()}

    def _extract(self, images) -> dict[str, Any]:
        import numpy as np

        chunk = [np.ascontiguousarray(img.permute(1, 2, 0).cpu().numpy()) for img in images]
        pixels = self.processor.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
        hidden = self.model.vision_model(pixel_values=pixels.to(self.device, self.dtype))
        return {"embedding": self.model.visual_projection(hidden.pooler_output)}

    def count_truncated(self, texts: list[str]) -> list[bool]:
        """Which texts are longer than the CLIP context (they are truncated, end token kept)."""
        lengths = [len(ids) for ids in self.processor.tokenizer(texts, truncation=False)["input_ids"]]
        return [n > self.max_length for n in lengths]

    def encode_texts(self, texts: list[str]):
        """Projected (unnormalised) text embeddings, float32 torch on CPU, one row per text."""
        import torch

        from evalrun.numerics import full_float32

        out = []
        with torch.no_grad(), full_float32():
            for start in range(0, len(texts), self.batch_size):
                tok = self.processor.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                               max_length=self.max_length, return_tensors="pt")
                hidden = self.model.text_model(input_ids=tok["input_ids"].to(self.device),
                                               attention_mask=tok["attention_mask"].to(self.device))
                out.append(self.model.text_projection(hidden.pooler_output).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)

    def encode_images(self, images):
        """Projected (unnormalised) image embeddings of uint8 (N, 3, H, W) images, float32 torch on CPU."""
        import torch

        return torch.from_numpy(self.extract(images)["embedding"])
