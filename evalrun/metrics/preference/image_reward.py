"""ImageReward (Xu et al. 2023): BLIP (ViT-L/16 + BERT with image cross-attention) and an MLP head.

Loaded through transformers' ``BlipVisionModel`` and ``BlipTextModel``, not through the
``image-reward`` package: its 1.5 release imports helpers that transformers 5 removed
(``transformers.modeling_utils.apply_chunking_to_forward``), pins ``timm==0.6.13`` and
``fairscale``, imports OpenAI's ``clip``, downloads ``bert-base-uncased`` when the model is built,
and reads checkpoints with a bare ``torch.load``.

Files: ``ImageReward.pt`` (a plain state dict of the authors' ``ImageReward`` module, read with
``torch.load(weights_only=True)``; ``ImageReward.safetensors`` with the same keys also works) and
``med_config.json`` beside it (the BERT config), from ``THUDM/ImageReward``; the tokenizer is
``bert-base-uncased`` plus the two tokens BLIP adds (``[DEC]`` as bos, ``[ENC]``).

The checkpoint's keys are renamed by the explicit table in ``map_checkpoint`` (every tensor
used, none missing, shapes checked); the vision tower's size is read from the tensors' shapes
(ImageReward hard-codes ViT-L/16 at 224 px; BLIP's ViTs all have 64-wide heads).

Per image, as ``ImageReward.score``/``inference_rank`` compute it: the PIL image through
``Resize(224, bicubic)`` (shortest side), ``CenterCrop(224)``, ``ToTensor``, CLIP's mean/std;
the prompt through the tokenizer with ``padding='max_length', truncation=True, max_length=35``
(input ids used as they come, starting with ``[CLS]``: the authors' scoring code does not swap
in ``[ENC]``, unlike BLIP's ITM head); the text encoder with cross-attention to all image
tokens; the first token's last hidden state -> MLP -> ``(r - mean) / std`` with the authors'
constants.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evalrun.numerics import full_float32
from evalrun.errors import EvalrunError, load_error
from evalrun.metrics.preference._common import (Scorer, check_inputs, dtype_name, hub_file, is_hub_id, load_weights,
                                                missing_error, resolve_dir_or_file, sha256_file, tensors_only, to_pil,
                                                versions)
from evalrun.metrics.preference.image_reward_keys import IGNORED, KEY_MAP, map_checkpoint  # noqa: F401

REPO = "THUDM/ImageReward"
FILENAME = "ImageReward.pt"
MED_CONFIG = "med_config.json"
TOKENIZER = "bert-base-uncased"
MEAN = 0.16717362830052426  # ImageReward.mean
STD = 1.0333394966054072  # ImageReward.std
MAX_LENGTH = 35
IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIT_EPS = 1e-6  # BLIP's VisionTransformer: partial(nn.LayerNorm, eps=1e-6)
VIT_HEAD_WIDTH = 64  # ViT-B (768/12) and ViT-L (1024/16) alike
MLP_LAYERS = (0, 2, 4, 6, 7)  # nn.Sequential(Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear)

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


def _build(state: dict[str, torch.Tensor], med: dict[str, Any], path: Path) -> ImageRewardNet:
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


# ----------------------------------------------------------------------------- scorer
def preprocess(images: torch.Tensor) -> torch.Tensor:
    """ImageReward's ``_transform(224)`` on uint8 (N, 3, H, W), through the same torchvision ops on PIL."""
    try:
        from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor
    except ImportError:
        raise EvalrunError("ImageReward's preprocessing needs torchvision: pip install 'evalrun[fid]'") from None
    transform = Compose([Resize(IMAGE_SIZE, interpolation=InterpolationMode.BICUBIC), CenterCrop(IMAGE_SIZE),
                         lambda im: im.convert("RGB"), ToTensor(), Normalize(CLIP_MEAN, CLIP_STD)])
    return torch.stack([transform(im) for im in to_pil(images)])


def load_tokenizer(source: str, name: str, key: str):
    """``bert-base-uncased`` + BLIP's added tokens (``init_tokenizer`` in BLIP's blip.py)."""
    from transformers import BertTokenizer

    try:
        tokenizer = BertTokenizer.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        raise load_error("ImageReward's BERT tokenizer", name, exc, key) from None
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    # transformers 5 dropped `additional_special_tokens_ids`, which BLIP reads; same id this way
    tokenizer.enc_token_id = tokenizer.convert_tokens_to_ids("[ENC]")
    return tokenizer


class ImageReward(Scorer):
    name = "image_reward"
    higher_is_better = True

    def __init__(self, net: ImageRewardNet, tokenizer: Any, files: dict[str, Path], checkpoint: str,
                 tokenizer_name: str, device: torch.device, dtype: torch.dtype, batch_size: int = 16) -> None:
        self.net, self.tokenizer, self.files = net, tokenizer, files
        self.checkpoint, self.tokenizer_name = checkpoint, tokenizer_name
        self.device, self.dtype, self.batch_size = device, dtype, int(batch_size)

    def tokenize(self, prompts: list[str]):
        return self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=MAX_LENGTH,
                              return_tensors="pt")

    def count_truncated(self, prompts: list[str]) -> int:
        ids = self.tokenizer(list(prompts), truncation=False, verbose=False)["input_ids"]
        return sum(len(x) > MAX_LENGTH for x in ids)

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        check_inputs(images, prompts)
        out = []
        for start in range(0, len(images), self.batch_size):
            pixels = preprocess(images[start:start + self.batch_size])
            tok = self.tokenize(prompts[start:start + self.batch_size])
            with full_float32():
                rewards = self.net(pixels.to(self.device, self.dtype), tok["input_ids"].to(self.device),
                                   tok["attention_mask"].to(self.device))
            out.append((rewards.double().cpu() - MEAN) / STD)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

    def info(self) -> dict[str, Any]:
        vc = self.net.vision.config
        return {
            "scorer": self.name,
            "checkpoint": self.checkpoint,
            "tokenizer": self.tokenizer_name,
            "weights_sha256": {p.name: sha256_file(p) for p in self.files.values()},
            "vision": {"width": vc.hidden_size, "layers": vc.num_hidden_layers, "heads": vc.num_attention_heads,
                       "patch": vc.patch_size},
            "preprocessing": {"size": IMAGE_SIZE, "resize": "shortest side, PIL", "interpolation": "bicubic",
                              "crop": "center", "mean": list(CLIP_MEAN), "std": list(CLIP_STD)},
            "text_max_length": MAX_LENGTH,
            "score": "(mlp(text_encoder(prompt, cross-attn image)[CLS]) - mean) / std",
            "reward_mean": MEAN, "reward_std": STD,
            "dtype": dtype_name(self.dtype),
            "versions": versions("torch", "torchvision", "transformers", "pillow"),
        }


def _resolve_files(path_or_id: str, key: str) -> dict[str, Path]:
    download = f"hf download {REPO} {FILENAME} {MED_CONFIG} --local-dir DIR"
    local = resolve_dir_or_file(path_or_id)
    if local is None and is_hub_id(str(path_or_id)):
        return {"weights": hub_file(str(path_or_id), FILENAME, "the ImageReward checkpoint", key, download),
                "med_config": hub_file(str(path_or_id), MED_CONFIG, "ImageReward's med_config.json", key, download)}
    if local is None:
        raise missing_error("the ImageReward checkpoint", str(path_or_id), download, key, "no such file or folder")
    if local.is_dir():
        weights = next((local / n for n in (FILENAME, "ImageReward.safetensors") if (local / n).is_file()), None)
        if weights is None:
            raise missing_error("the ImageReward checkpoint", str(local / FILENAME), download, key,
                                f"the folder has no {FILENAME}")
    else:
        weights = local
    med = weights.parent / MED_CONFIG
    if not med.is_file():
        raise missing_error("ImageReward's med_config.json", str(med), download, key,
                            f"{MED_CONFIG} must lie beside {weights.name}")
    return {"weights": weights, "med_config": med}


def load_image_reward(path_or_id: str = REPO, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                      key: str = "metrics.image_reward.checkpoint", tokenizer: str | None = None,
                      tokenizer_key: str = "metrics.image_reward.tokenizer", batch_size: int = 16) -> ImageReward:
    """ImageReward from ``ImageReward.pt`` + ``med_config.json`` (a folder, the .pt file, or a hub id
    in the local cache). ``tokenizer=None``: a ``tokenizer/`` folder beside the checkpoint if there is
    one, else ``bert-base-uncased``."""
    device = torch.device(device)
    files = _resolve_files(path_or_id, key)
    what = "the ImageReward checkpoint"
    state = tensors_only(load_weights(files["weights"], what, key), what, files["weights"])
    med = json.loads(files["med_config"].read_text())
    net = _build(state, med, files["weights"])
    if tokenizer is None:
        beside = files["weights"].parent / "tokenizer"
        tokenizer = str(beside) if beside.is_dir() else TOKENIZER
    tok_dir = resolve_dir_or_file(tokenizer)
    tok = load_tokenizer(str(tok_dir) if tok_dir is not None else tokenizer, tokenizer, tokenizer_key)
    if len(tok) != net.text.config.vocab_size:
        # transformers 5 builds an empty BertTokenizer when it finds no vocab.txt offline, so a
        # missing download shows up here rather than as a loading error.
        raise missing_error("ImageReward's BERT tokenizer", str(tokenizer), f"hf download {TOKENIZER} vocab.txt "
                            f"tokenizer_config.json --local-dir DIR", tokenizer_key,
                            f"it has {len(tok)} tokens with [DEC] and [ENC], the checkpoint's vocabulary "
                            f"{net.text.config.vocab_size} (no vocab.txt found, or not BERT's uncased vocabulary)")
    net.vision.to(device=device, dtype=dtype)
    net.text.to(device=device, dtype=dtype)
    net.mlp.to(device=device, dtype=torch.float32)  # the authors cast the features to float for the head
    return ImageReward(net, tok, files, str(path_or_id), str(tokenizer), device, dtype, batch_size)

