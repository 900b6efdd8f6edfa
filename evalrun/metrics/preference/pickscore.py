"""PickScore (Kirstain et al. 2023): a CLIP-H fine-tune on Pick-a-Pic preferences.

The model (``yuvalkirstain/PickScore_v1``) and its processor
(``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``) live in different repositories, so they are two
settings; each takes a hub id or a local directory saved in transformers' layout.

Per image, exactly as the authors' README computes it: the processor's own preprocessing of
the PIL image, the processor's tokenizer with ``padding=True, truncation=True, max_length=77``
(truncation keeps the end token), projected image and text embeddings divided by their norms,
and ``logit_scale.exp() * <text, image>``. The README scores one prompt against several images
(``(text_embs @ image_embs.T)[0]``); with one prompt per image that is the diagonal.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from evalrun.numerics import full_float32
from evalrun.errors import load_error
from evalrun.metrics.preference._common import (Scorer, check_inputs, dtype_name, is_hub_id, missing_error, one_line,
                                                resolve_dir_or_file, sha256_file, to_pil, versions)

MODEL = "yuvalkirstain/PickScore_v1"
PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
MAX_LENGTH = 77  # the authors' max_length; CLIP's context
# config.json lets AutoProcessor (the authors' snippet) pick CLIPProcessor; evalrun loads CLIPProcessor directly
PROCESSOR_FILES = ("config.json preprocessor_config.json tokenizer.json tokenizer_config.json vocab.json merges.txt "
                   "special_tokens_map.json")
_WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def _offline(exc: BaseException) -> bool:
    import os

    text = str(exc).lower()
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or any(
        s in text for s in ("offline", "not fully cached", "connection", "resolve", "couldn't reach"))


def weight_files(source: str) -> list[Path]:
    """The weights files ``from_pretrained(source)`` reads (safetensors first, as transformers does),
    from a local directory or the local hub cache; shards listed by an index file included."""
    import json

    from huggingface_hub import try_to_load_from_cache

    def find(name: str) -> Path | None:
        local = Path(source) / name
        if local.is_file():
            return local
        cached = try_to_load_from_cache(source, name) if not Path(source).exists() else None
        return Path(cached) if isinstance(cached, str) else None

    for name in _WEIGHT_NAMES:
        path = find(name)
        if path is None:
            continue
        if name.endswith(".index.json"):
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            return [p for p in (find(s) for s in shards) if p is not None]
        return [path]
    return []


def _plain(size: Any) -> Any:
    """transformers' SizeDict (or a dict, or None) as a plain JSON-able dict."""
    if size is None or isinstance(size, (int, float)):
        return size
    keys = ("height", "width", "shortest_edge", "longest_edge")
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    return {k: get(k) for k in keys if get(k) is not None}


class PickScore(Scorer):
    name = "pickscore"
    higher_is_better = True

    def __init__(self, model: Any, processor: Any, model_name: str, processor_name: str, model_source: str,
                 device: torch.device, dtype: torch.dtype, batch_size: int = 32) -> None:
        self.model, self.processor = model, processor
        self.model_name, self.processor_name, self.model_source = model_name, processor_name, model_source
        self.device, self.dtype, self.batch_size = device, dtype, int(batch_size)

    def count_truncated(self, prompts: list[str]) -> int:
        ids = self.processor.tokenizer(list(prompts), truncation=False, verbose=False)["input_ids"]
        return sum(len(x) > MAX_LENGTH for x in ids)

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        check_inputs(images, prompts)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk, texts = images[start:start + self.batch_size], list(prompts[start:start + self.batch_size])
            pixels = self.processor(images=to_pil(chunk), return_tensors="pt")["pixel_values"]
            tok = self.processor(text=texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            with full_float32():
                vision = self.model.vision_model(pixel_values=pixels.to(self.device, self.dtype))
                image_emb = self.model.visual_projection(vision.pooler_output)
                text = self.model.text_model(input_ids=tok["input_ids"].to(self.device),
                                             attention_mask=tok["attention_mask"].to(self.device))
                text_emb = self.model.text_projection(text.pooler_output)
            image_emb = image_emb.double().cpu()
            text_emb = text_emb.double().cpu()
            image_emb = image_emb / image_emb.norm(dim=-1, keepdim=True)
            text_emb = text_emb / text_emb.norm(dim=-1, keepdim=True)
            scale = self.model.logit_scale.detach().double().cpu().exp()
            out.append(scale * (text_emb * image_emb).sum(-1))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

    def info(self) -> dict[str, Any]:
        ip = self.processor.image_processor
        files = weight_files(self.model_source)
        return {
            "scorer": self.name,
            "model": self.model_name,
            "processor": self.processor_name,
            "weights_sha256": {f.name: sha256_file(f) for f in files},
            "preprocessing": {
                "image_processor": type(ip).__name__,
                "size": _plain(ip.size),
                "crop_size": _plain(getattr(ip, "crop_size", None)),
                "do_center_crop": getattr(ip, "do_center_crop", None),
                "resample": str(getattr(ip, "resample", None)),
                "image_mean": list(ip.image_mean), "image_std": list(ip.image_std),
            },
            "text_max_length": MAX_LENGTH,
            "score": "logit_scale.exp() * cos(text, image)",
            "logit_scale_exp": float(self.model.logit_scale.detach().float().exp()),
            "dtype": dtype_name(self.dtype),
            "versions": versions("torch", "transformers", "pillow"),
        }


def load_pickscore(path_or_id: str = MODEL, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                   key: str = "metrics.pickscore.model", processor: str | None = None,
                   processor_key: str = "metrics.pickscore.processor", batch_size: int = 32) -> PickScore:
    """PickScore from a hub id or local directory (``path_or_id``) and its processor (``processor``).

    ``processor=None`` means the authors' ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``, unless the model
    folder has a ``processor/`` subfolder (a layout that keeps both offline copies together).
    Loads with the concrete ``CLIPModel``/``CLIPProcessor`` classes (never remote code).
    """
    from transformers import CLIPModel, CLIPProcessor

    device = torch.device(device)
    model_dir = resolve_dir_or_file(path_or_id)
    model_source = str(model_dir) if model_dir is not None else str(path_or_id)
    if processor is None:
        processor = str(model_dir / "processor") if model_dir is not None and (model_dir / "processor").is_dir() \
            else PROCESSOR
    proc_dir = resolve_dir_or_file(processor)
    proc_source = str(proc_dir) if proc_dir is not None else str(processor)
    try:
        model = CLIPModel.from_pretrained(model_source, dtype=dtype)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:  # a pickled .bin refused by weights_only
        raise load_error("PickScore model", str(path_or_id), exc, key) from None
    try:
        proc = CLIPProcessor.from_pretrained(proc_source)
    except (OSError, ValueError, TypeError) as exc:
        if proc_dir is not None or not is_hub_id(str(processor)):
            raise load_error("PickScore processor", str(processor), exc, processor_key) from None
        # the processor's repo also holds a 4 GB model PickScore does not need: name only its small files
        raise missing_error("PickScore processor", str(processor), f"hf download {processor} {PROCESSOR_FILES} "
                            f"--local-dir DIR", processor_key, "" if _offline(exc) else one_line(exc)) from None
    return PickScore(model.to(device).eval(), proc, str(path_or_id), str(processor), model_source, device, dtype,
                     batch_size)


def build_tiny_pickscore(target: Path) -> None:
    """Random-weight PickScore twin.

    ``target``: a small ``CLIPModel`` saved with ``save_pretrained`` (config.json + model.safetensors,
    the PickScore_v1 layout). ``target/processor``: the processor files as laion's CLIP-ViT-H-14 repo
    has them: ``preprocessor_config.json`` in the legacy ``CLIPFeatureExtractor`` form (224 bicubic
    shortest edge, 224 centre crop, CLIP mean/std), CLIP tokenizer files (a character vocabulary,
    77-token context) and the model's ``config.json``, which ``AutoProcessor`` reads to pick
    ``CLIPProcessor`` (without it, transformers 5 returns a bare tokenizer).
    """
    import json

    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTokenizer, CLIPVisionConfig

    from evalrun.tiny.sd import write_char_tokenizer

    target = Path(target)
    proc_dir = target / "processor"
    write_char_tokenizer(proc_dir, model_max_length=MAX_LENGTH)
    tokenizer = CLIPTokenizer.from_pretrained(proc_dir)
    (proc_dir / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}, indent=2))
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4,
                          num_hidden_layers=2, max_position_embeddings=MAX_LENGTH, projection_dim=32,
                          hidden_act="gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                              image_size=224, patch_size=32, projection_dim=32, hidden_act="gelu")
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    config.save_pretrained(proc_dir)
    torch.manual_seed(0)
    model = CLIPModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(4.6052)  # ln(100): PickScore's trained scale is of this order
    model.save_pretrained(target)
