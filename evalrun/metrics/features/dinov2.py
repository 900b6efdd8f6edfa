"""DINOv2 as EDM2 uses it for FD_DINOv2 (Stein et al. 2023; NVlabs/edm2 ``calculate_metrics.py``,
``DINOv2Detector``), loaded through transformers so it works from a local folder, offline.

EDM2's detector, step by step, and what evalrun does for each:

1. ``torch.hub.load('facebookresearch/dinov2:main', 'dinov2_vitl14')``: ViT-L/14, the weights
   transformers publishes as ``facebook/dinov2-large`` (``path``: a hub id or a local copy made
   with ``save_pretrained``/``hf download``; torch.hub needs GitHub, so it is not used).
2. ``F.interpolate(x.float(), size=(224, 224), mode='bicubic', antialias=True)`` on the uint8
   values as floats in [0, 255] (no clamp afterwards): the same call here.
3. ``x / 255``, minus ImageNet mean (0.485, 0.456, 0.406), over std (0.229, 0.224, 0.225).
4. ``model(x)``: the hub model's ``forward`` returns ``head(x_norm_clstoken)`` with an identity
   head, the CLS token after the final LayerNorm. In transformers that is
   ``Dinov2Model(...).pooler_output`` (``layernorm(last_hidden_state)[:, 0]``): the embedding
   here, 1024-d for ViT-L.

One place where the two code bases differ: the pretrained position embeddings are for a
37 x 37 patch grid (518 px) and are resized to the 16 x 16 grid of a 224 px input. The hub
code calls ``interpolate(..., scale_factor=((16 + 0.1) / 37,) * 2, mode='bicubic')`` (the
"+ 0.1" kludge of facebookresearch/dino#8, no antialias); transformers 5.x calls it with
``size=(16, 16)``. The two sample the embedding grid at slightly different points.
``pos_embedding="hub"`` (default) replaces transformers' resize with the hub's, so the
features are EDM2's; ``"transformers"`` keeps the library's own. Checked in the tests
against an independent transcription of the hub function (not against the hub model
itself, which needs GitHub).
"""

from __future__ import annotations

import math
import pickle
import types
from pathlib import Path
from typing import Any

import evalrun.tiny as tiny
from evalrun.errors import ConfigError, load_error
from evalrun.metrics.features.base import FeatureExtractor

SIZE = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
POS_EMBEDDINGS = ("hub", "transformers")
HUB_OFFSET = 0.1


def build_tiny_dinov2(target) -> None:
    """A 2-layer DINOv2 with random weights in transformers' layout, with ViT-L/14's patch size and
    518 px position grid (so the 224 px input takes the same position-embedding resize)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=518,
                          patch_size=14, layerscale_value=1.0)
    Dinov2Model(config).eval().save_pretrained(target)


def hub_interpolate_pos_encoding(self, embeddings, height: int, width: int):
    """facebookresearch/dinov2 ``DinoVisionTransformer.interpolate_pos_encoding`` on transformers'
    ``Dinov2Embeddings`` (bound to it in place of transformers' own)."""
    import torch

    npatch = embeddings.shape[1] - 1
    n = self.position_embeddings.shape[1] - 1
    if npatch == n and height == width:
        return self.position_embeddings
    pos = self.position_embeddings.float()
    class_pos, patch_pos = pos[:, 0], pos[:, 1:]
    dim = embeddings.shape[-1]
    patch = self.patch_embeddings.patch_size
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    h0, w0 = height // patch_h + HUB_OFFSET, width // patch_w + HUB_OFFSET
    m = int(math.sqrt(n))
    patch_pos = torch.nn.functional.interpolate(patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2),
                                                scale_factor=(float(h0 / m), float(w0 / m)), mode="bicubic")
    if int(h0) != patch_pos.shape[-2] or int(w0) != patch_pos.shape[-1]:
        raise RuntimeError(f"position embedding resize gave {tuple(patch_pos.shape[-2:])}, expected {(int(h0), int(w0))}")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((class_pos.unsqueeze(0), patch_pos), dim=1).to(embeddings.dtype)


def edm2_pixels(images):
    """uint8 (N, 3, H, W) -> EDM2's DINOv2 input: bicubic antialiased resize to 224 of the [0, 255]
    floats, then /255 and ImageNet normalisation (float32)."""
    import torch

    x = torch.nn.functional.interpolate(images.to(torch.float32), size=(SIZE, SIZE), mode="bicubic", antialias=True)
    x = x / 255
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return (x - mean) / std


class DINOv2(FeatureExtractor):
    """uint8 images -> {"embedding": final-norm CLS token (N, hidden)} (1024-d for ViT-L/14)."""

    name = "dinov2"

    def __init__(self, device: Any = "cpu", path: str = "facebook/dinov2-large", batch_size: int = 64,
                 pos_embedding: str = "hub", key: str = "metrics.fd_dinov2.feature_extractor_path") -> None:
        super().__init__(device, batch_size)
        import torch
        from transformers import Dinov2Model

        if pos_embedding not in POS_EMBEDDINGS:
            raise ConfigError(f"DINOv2 pos_embedding={pos_embedding!r}; valid: {', '.join(POS_EMBEDDINGS)}")
        self.model_name, self.pos_embedding = str(path), pos_embedding
        self.source = tiny.resolve(self.model_name)
        try:
            model = Dinov2Model.from_pretrained(self.source, dtype=torch.float32)
        except (OSError, ValueError, pickle.UnpicklingError) as exc:  # a pickled .bin refused by weights_only
            raise load_error("DINOv2 model", self.model_name, exc, key, local_dir=self.source) from None
        if pos_embedding == "hub":
            model.embeddings.interpolate_pos_encoding = types.MethodType(hub_interpolate_pos_encoding, model.embeddings)
        self.model = model.to(self.device).eval()
        self.random_weights = Path(self.source).is_dir() and tiny.is_random_weights(self.source)
        self._weights: dict[str, Any] | None = None

    @property
    def layers(self) -> dict[str, int]:
        return {"embedding": int(self.model.config.hidden_size)}

    def preprocessing(self) -> dict[str, Any]:
        return {"input": "uint8", "resize": f"torch bicubic antialias=True to {SIZE}x{SIZE} on [0, 255] floats, no clamp",
                "normalise": f"/255, ImageNet mean {MEAN} std {STD}",
                "pos_embedding": "facebookresearch/dinov2 hub resize (scale_factor (n + 0.1) / 37, bicubic)"
                if self.pos_embedding == "hub" else "transformers' resize (size=(n, n), bicubic)",
                "embedding": "pooler_output = final LayerNorm CLS token (EDM2's x_norm_clstoken)"}

    def weights_identity(self) -> dict[str, Any]:
        if self._weights is None:
            from evalrun.hashing import pretrained_files_identity, tensors_sha256

            found = pretrained_files_identity(self.source)
            self._weights = found or {"tensors_sha256": tensors_sha256({"dinov2": self.model})}
            self._weights["random_weights"] = self.random_weights
        return self._weights

    def versions(self) -> dict[str, str]:
        import transformers

        return {**super().versions(), "transformers": transformers.__version__}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "dinov2_model": self.model_name, "dinov2_pos_embedding": self.pos_embedding}

    def _extract(self, images) -> dict[str, Any]:
        return {"embedding": self.model(pixel_values=edm2_pixels(images)).pooler_output}
