"""ImageReward.pt's keys (the authors' ``ImageReward`` module: ``blip.visual_encoder``, ``blip.text_encoder``,
``mlp``) -> ``ImageRewardNet``'s (transformers' BLIP towers): an explicit table, every tensor used or
known to be unused, so a checkpoint that is not ImageReward's is refused by name.
"""

from __future__ import annotations

import re

import torch

from evalrun.errors import EvalrunError

_V = r"blip\.visual_encoder\."
_T = r"blip\.text_encoder\."
_WB = r"(weight|bias)"
# (checkpoint key pattern, model key template): every tensor the score uses.
KEY_MAP: list[tuple[str, str]] = [
    (_V + r"cls_token", "vision.embeddings.class_embedding"),
    (_V + r"pos_embed", "vision.embeddings.position_embedding"),
    (_V + r"patch_embed\.proj\." + _WB, r"vision.embeddings.patch_embedding.\1"),
    (_V + r"blocks\.(\d+)\.norm1\." + _WB, r"vision.encoder.layers.\1.layer_norm1.\2"),
    (_V + r"blocks\.(\d+)\.attn\.qkv\." + _WB, r"vision.encoder.layers.\1.self_attn.qkv.\2"),
    (_V + r"blocks\.(\d+)\.attn\.proj\." + _WB, r"vision.encoder.layers.\1.self_attn.projection.\2"),
    (_V + r"blocks\.(\d+)\.norm2\." + _WB, r"vision.encoder.layers.\1.layer_norm2.\2"),
    (_V + r"blocks\.(\d+)\.mlp\.(fc1|fc2)\." + _WB, r"vision.encoder.layers.\1.mlp.\2.\3"),
    (_V + r"norm\." + _WB, r"vision.post_layernorm.\1"),
    (_T + r"embeddings\.(word_embeddings|position_embeddings)\.weight", r"text.embeddings.\1.weight"),
    (_T + r"embeddings\.LayerNorm\." + _WB, r"text.embeddings.LayerNorm.\1"),
    (_T + r"encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.(query|key|value)\." + _WB,
     r"text.encoder.layer.\1.\2.self.\3.\4"),
    (_T + r"encoder\.layer\.(\d+)\.(attention|crossattention)\.output\.(dense|LayerNorm)\." + _WB,
     r"text.encoder.layer.\1.\2.output.\3.\4"),
    (_T + r"encoder\.layer\.(\d+)\.intermediate\.dense\." + _WB, r"text.encoder.layer.\1.intermediate.dense.\2"),
    (_T + r"encoder\.layer\.(\d+)\.output\.(dense|LayerNorm)\." + _WB, r"text.encoder.layer.\1.output.\2.\3"),
    (r"mlp\.layers\.([02467])\." + _WB, r"mlp.layers.\1.\2"),
]
# In the checkpoint but not used by the score: BLIP's contrastive projections, and BERT's
# position_ids buffer (checked to be 0, 1, 2, ... since the authors' model would use it).
IGNORED = [r"blip\.vision_proj\." + _WB, r"blip\.text_proj\." + _WB, _T + r"embeddings\.position_ids"]


def map_checkpoint(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename ImageReward.pt's keys to ``ImageRewardNet``'s; returns (mapped, ignored keys).

    Raises if a key is neither mapped nor known-unused, or if two keys map to one name."""
    mapped: dict[str, torch.Tensor] = {}
    ignored, unknown = [], []
    for key, value in state.items():
        for pattern, template in KEY_MAP:
            m = re.fullmatch(pattern, key)
            if m:
                name = m.expand(template)
                if name in mapped:
                    raise EvalrunError(f"ImageReward checkpoint: two keys map to {name}")
                mapped[name] = value
                break
        else:
            if any(re.fullmatch(p, key) for p in IGNORED):
                ignored.append(key)
            else:
                unknown.append(key)
    if unknown:
        raise EvalrunError(f"ImageReward checkpoint has {len(unknown)} keys evalrun does not know "
                           f"({', '.join(unknown[:4])}): it is not ImageReward.pt")
    return mapped, ignored
