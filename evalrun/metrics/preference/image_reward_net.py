"""ImageReward's network in transformers' BLIP classes, and the explicit map from the authors'
checkpoint keys to it (every tensor used, none missing, shapes checked)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evalrun.errors import EvalrunError

IMAGE_SIZE = 224
VIT_EPS = 1e-6  # BLIP's VisionTransformer: partial(nn.LayerNorm, eps=1e-6)
VIT_HEAD_WIDTH = 64  # ViT-B (768/12) and ViT-L (1024/16) alike
MLP_LAYERS = (0, 2, 4, 6, 7)  # nn.Sequential(Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear)

# ----------------------------------------------------------------------------- key mapping
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


# ----------------------------------------------------------------------------- model
class ImageRewardNet(nn.Module):
    """BLIP's ViT as ``BlipVisionModel``, its BERT as ``BlipTextModel`` (cross-attention layers
    built by ``is_decoder=True``, run bidirectionally), and the authors' MLP head."""

    def __init__(self, vision_config: Any, text_config: Any, mlp_sizes: list[int]) -> None:
        from transformers import BlipTextModel, BlipVisionModel

        super().__init__()
        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(mlp_sizes[:-1], mlp_sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < 3:
                layers.append(nn.Dropout((0.2, 0.2, 0.1)[i]))
        self.mlp = nn.Module()
        self.mlp.layers = nn.Sequential(*layers)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state  # post-norm, all tokens
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.text(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
                        encoder_attention_mask=image_atts)
        features = out.last_hidden_state[:, 0, :].float()
        return self.mlp.layers(features).squeeze(-1)


def configs_from_checkpoint(state: dict[str, torch.Tensor], med: dict[str, Any]):
    """Vision config from the ViT's tensor shapes, text config from med_config.json, MLP sizes."""
    from transformers import BlipTextConfig, BlipVisionConfig

    cls = state["blip.visual_encoder.cls_token"]
    width = int(cls.shape[-1])
    depth = len({k.split(".")[3] for k in state if k.startswith("blip.visual_encoder.blocks.")})
    patch = int(state["blip.visual_encoder.patch_embed.proj.weight"].shape[-1])
    grid = math.isqrt(int(state["blip.visual_encoder.pos_embed"].shape[1]) - 1)
    if grid * patch != IMAGE_SIZE:
        raise EvalrunError(f"ImageReward checkpoint: its ViT takes {grid * patch} px images, ImageReward's "
                           f"preprocessing gives {IMAGE_SIZE}")
    vision = BlipVisionConfig(
        hidden_size=width, intermediate_size=int(state["blip.visual_encoder.blocks.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=depth, num_attention_heads=width // VIT_HEAD_WIDTH, image_size=IMAGE_SIZE,
        patch_size=patch, hidden_act="gelu", layer_norm_eps=VIT_EPS, attention_dropout=0.0)
    if not med.get("add_cross_attention", False):
        raise EvalrunError("ImageReward med_config.json: add_cross_attention is not true")
    if med.get("position_embedding_type", "absolute") != "absolute":
        raise EvalrunError("ImageReward med_config.json: only absolute position embeddings are supported")
    text = BlipTextConfig(
        vocab_size=med["vocab_size"], hidden_size=med["hidden_size"], encoder_hidden_size=width,
        intermediate_size=med["intermediate_size"], num_hidden_layers=med["num_hidden_layers"],
        num_attention_heads=med["num_attention_heads"], max_position_embeddings=med["max_position_embeddings"],
        hidden_act=med.get("hidden_act", "gelu"), layer_norm_eps=med.get("layer_norm_eps", 1e-12),
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=med.get("pad_token_id", 0),
        bos_token_id=med["vocab_size"] - 2,  # [DEC], added first after BERT's vocabulary
        is_decoder=True)  # builds the cross-attention layers; forward runs with is_decoder=False (no causal mask)
    sizes = [int(state[f"mlp.layers.{i}.weight"].shape[1]) for i in MLP_LAYERS] + [1]
    return vision, text, sizes


def build_net(state: dict[str, torch.Tensor], med: dict[str, Any], path: Path) -> ImageRewardNet:
    mapped, ignored = map_checkpoint(state)
    pos_ids = state.get("blip.text_encoder.embeddings.position_ids")
    if pos_ids is not None and not torch.equal(pos_ids.flatten().long(), torch.arange(pos_ids.numel())):
        raise EvalrunError(f"ImageReward checkpoint {str(path)!r}: position_ids are not 0, 1, 2, ...")
    try:
        vision, text, sizes = configs_from_checkpoint(state, med)
    except KeyError as exc:
        raise EvalrunError(f"ImageReward checkpoint {str(path)!r} lacks {exc}: it is not ImageReward.pt") from None
    with torch.device("meta"):  # no random init of 450M parameters that are overwritten anyway
        net = ImageRewardNet(vision, text, sizes)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise EvalrunError(f"ImageReward checkpoint {str(path)!r} lacks {len(missing)} tensors "
                           f"({', '.join(missing[:4])}): it is not ImageReward.pt")
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(mapped[k].shape)]
    if bad:
        raise EvalrunError(f"ImageReward checkpoint {str(path)!r}: shapes do not fit med_config.json for "
                           f"{', '.join(bad[:4])}")
    net.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True, assign=True)
    emb = net.text.embeddings  # non-persistent buffer, not in any state dict
    emb.position_ids = torch.arange(text.max_position_embeddings).expand((1, -1))
    still_meta = [n for n, t in list(net.named_parameters()) + list(net.named_buffers()) if t.is_meta]
    if still_meta:
        raise EvalrunError(f"ImageReward: tensors left unset after loading: {still_meta[:4]}")
    net.mapped_keys, net.ignored_keys = sorted(mapped), ignored  # for tests and info()
    return net.eval()
