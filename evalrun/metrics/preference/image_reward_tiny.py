"""ImageReward's tiny twin: random weights in the real checkpoint's layout (``ImageReward.pt``,
``med_config.json``) plus a small BERT vocabulary, so the real loading code runs offline.

Served as ``evalrun/tiny-image-reward`` (``evalrun.tiny.BUILDERS``); its numbers mean nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from evalrun.metrics.preference.image_reward import FILENAME, IMAGE_SIZE, MED_CONFIG, MLP_LAYERS

def write_bert_vocab(directory: Path) -> None:
    """A small uncased WordPiece vocabulary: BERT's special tokens, characters, '##' characters, a few words."""
    import string

    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    words = ["the", "photo", "of", "cat", "dog", "red", "blue", "an", "on", "in", "with", "painting"]
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(4)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += chars + ["##" + c for c in chars] + [w for w in words if w not in chars]
    assert len(vocab) == len(set(vocab))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}))


def tiny_state_dict(vocab_size: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Random tensors under the authors' key names (BLIP_Pretrain + MLP), for a ViT of width 128
    (2 heads of 64, 2 blocks, 32 px patches at 224 px) and a 2-layer BERT of width 64."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    def ln(prefix, n):
        return {f"{prefix}.weight": 1 + rnd(n, std=0.1), f"{prefix}.bias": rnd(n, std=0.1)}

    def lin(prefix, n_out, n_in, std=0.02):
        return {f"{prefix}.weight": rnd(n_out, n_in, std=std), f"{prefix}.bias": rnd(n_out, std=std)}

    vw, vdepth, patch, mlp_ratio = 128, 2, 32, 4
    tw, tdepth, theads, tinter, max_pos = 64, 2, 2, 128, 40
    grid = IMAGE_SIZE // patch
    sd: dict[str, torch.Tensor] = {}
    v = "blip.visual_encoder"
    sd[f"{v}.cls_token"] = rnd(1, 1, vw)
    sd[f"{v}.pos_embed"] = rnd(1, grid * grid + 1, vw)
    sd[f"{v}.patch_embed.proj.weight"] = rnd(vw, 3, patch, patch)
    sd[f"{v}.patch_embed.proj.bias"] = rnd(vw)
    for i in range(vdepth):
        b = f"{v}.blocks.{i}"
        sd |= ln(f"{b}.norm1", vw) | lin(f"{b}.attn.qkv", 3 * vw, vw, 0.1) | lin(f"{b}.attn.proj", vw, vw, 0.1)
        sd |= ln(f"{b}.norm2", vw) | lin(f"{b}.mlp.fc1", mlp_ratio * vw, vw, 0.1)
        sd |= lin(f"{b}.mlp.fc2", vw, mlp_ratio * vw, 0.1)
    sd |= ln(f"{v}.norm", vw)
    t = "blip.text_encoder"
    sd[f"{t}.embeddings.word_embeddings.weight"] = rnd(vocab_size, tw, std=0.5)
    sd[f"{t}.embeddings.position_embeddings.weight"] = rnd(max_pos, tw, std=0.5)
    sd[f"{t}.embeddings.position_ids"] = torch.arange(max_pos).expand((1, -1)).clone()
    sd |= ln(f"{t}.embeddings.LayerNorm", tw)
    for i in range(tdepth):
        b = f"{t}.encoder.layer.{i}"
        for kind, kv_width in (("attention", tw), ("crossattention", vw)):
            sd |= lin(f"{b}.{kind}.self.query", tw, tw, 0.2)
            sd |= lin(f"{b}.{kind}.self.key", tw, kv_width, 0.2) | lin(f"{b}.{kind}.self.value", tw, kv_width, 0.2)
            sd |= lin(f"{b}.{kind}.output.dense", tw, tw, 0.1) | ln(f"{b}.{kind}.output.LayerNorm", tw)
        sd |= lin(f"{b}.intermediate.dense", tinter, tw, 0.1) | lin(f"{b}.output.dense", tw, tinter, 0.1)
        sd |= ln(f"{b}.output.LayerNorm", tw)
    sd |= lin("blip.vision_proj", 256, vw) | lin("blip.text_proj", 256, tw)
    sizes = [tw, 1024, 128, 64, 16, 1]
    for idx, (n_in, n_out) in zip(MLP_LAYERS, zip(sizes[:-1], sizes[1:])):
        sd |= lin(f"mlp.layers.{idx}", n_out, n_in, std=1.0 / math.sqrt(n_in))
    med = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "hidden_size": tw, "initializer_range": 0.02, "intermediate_size": tinter,
           "layer_norm_eps": 1e-12, "max_position_embeddings": max_pos, "model_type": "bert",
           "num_attention_heads": theads, "num_hidden_layers": tdepth, "pad_token_id": 0, "type_vocab_size": 2,
           "vocab_size": vocab_size, "encoder_width": vw, "add_cross_attention": True}
    return sd, med


def build_tiny_image_reward(target: Path) -> None:
    """Random-weight ImageReward twin in the real layout: ``ImageReward.pt`` (a plain state dict saved
    with ``torch.save``, readable with ``weights_only=True``), ``med_config.json``, and a small BERT
    vocabulary in ``tokenizer/`` (the real model uses ``bert-base-uncased``)."""
    from transformers import BertTokenizer

    target = Path(target)
    write_bert_vocab(target / "tokenizer")
    vocab_size = len(BertTokenizer.from_pretrained(target / "tokenizer")) + 2  # + [DEC], [ENC]
    state, med = tiny_state_dict(vocab_size)
    torch.save(state, target / FILENAME)
    (target / MED_CONFIG).write_text(json.dumps(med, indent=2))
