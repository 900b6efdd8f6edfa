"""HPSv2.1 (Wu et al. 2023): open_clip ViT-H-14 fine-tuned on human preferences.

Needs ``open_clip_torch`` (``pip install 'evalrun[hps]'``). Weights come from local files
only, or the local hub cache (``xswu/HPSv2``): ``HPS_v2.1_compressed.pt``, a dict whose
``'state_dict'`` holds the model's tensors, read with ``torch.load(weights_only=True)``;
a ``.safetensors`` file holding the same state dict is accepted too.

Per image, exactly as HPSv2's ``score`` (``hpsv2/img_score.py``) computes it:

- preprocessing: the ``preprocess_val`` HPSv2 builds with ``light_augmentation=True``, i.e.
  its ``image_transform(224, is_train=False, resize_longest_max=True)``: RGB -> ``ToTensor``
  -> ``ResizeMaxSize`` (the longest side to 224, bicubic resize of the float tensor,
  torchvision's default antialias, then zero padding to 224 x 224, centred) -> normalise with
  OpenAI CLIP's mean/std. This is not open_clip's own val transform (shortest side on the PIL
  image, then centre crop): non-square images differ a lot, square ones slightly (PIL's uint8
  resize vs a float tensor resize);
- text: open_clip's tokenizer for the model (SimpleTokenizer, 77 tokens; over-long prompts
  are cut to 77 tokens and the last one set to the end token);
- score: the diagonal of ``image_features @ text_features.T`` with both L2-normalised
  (no logit scale).

Architecture: HPSv2 builds ``'ViT-H-14'`` from open_clip's built-in configs. The loader uses
that unless an ``open_clip_config.json`` (open_clip's own local format: ``{"model_cfg": ...,
"preprocess_cfg": ...}``) lies beside the weights file, or ``architecture=`` names another
built-in model or a folder holding such a file. The tiny twin uses the JSON; the choice and
its source are recorded in ``info()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from evalrun.numerics import full_float32
from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.preference._common import (Scorer, check_inputs, dtype_name, hub_file, is_hub_id, load_weights,
                                                missing_error, one_line, resolve_dir_or_file, sha256_file, tensors_only,
                                                versions)

REPO = "xswu/HPSv2"
FILENAME = "HPS_v2.1_compressed.pt"
ARCHITECTURE = "ViT-H-14"
CONFIG_NAME = "open_clip_config.json"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _require_open_clip():
    try:
        import open_clip
    except ImportError:
        raise EvalrunError("HPSv2 needs open_clip_torch, which is not installed: pip install 'evalrun[hps]'") from None
    return open_clip


@contextlib.contextmanager
def _quiet_root_logger():
    """open_clip warns on the root logger that no pretrained weights were loaded: evalrun loads them next."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def hps_preprocess(images: torch.Tensor, size: int, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    """HPSv2's inference transform on uint8 (N, 3, H, W): float (N, 3, size, size).

    ``ToTensor`` of an RGB PIL image is ``uint8 / 255`` in float32; ``ResizeMaxSize`` then
    resizes the tensor so its longest side is ``size`` (sides ``round(dim * scale)``, bicubic,
    torchvision's default antialias) and pads it with zeros, ``pad // 2`` before and the rest after.
    """
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    out = []
    for img in images:
        x = img.float().div(255)
        height, width = x.shape[1:]
        scale = size / float(max(height, width))
        if scale != 1.0:
            new_size = [round(dim * scale) for dim in (height, width)]
            x = TF.resize(x, new_size, InterpolationMode.BICUBIC)
            pad_h, pad_w = size - new_size[0], size - new_size[1]
            x = TF.pad(x, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
        out.append(TF.normalize(x, mean=list(mean), std=list(std)))
    return torch.stack(out) if out else torch.empty(0, 3, size, size)


class HPSv2(Scorer):
    name = "hps"
    higher_is_better = True

    def __init__(self, model: Any, tokenizer: Any, weights: Path, checkpoint: str, architecture: str,
                 architecture_source: str, device: torch.device, dtype: torch.dtype, batch_size: int = 32) -> None:
        self.model, self.tokenizer, self.weights, self.checkpoint = model, tokenizer, weights, checkpoint
        self.architecture, self.architecture_source = architecture, architecture_source
        self.device, self.dtype, self.batch_size = device, dtype, int(batch_size)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        pp = getattr(model.visual, "preprocess_cfg", {}) or {}
        # HPSv2 takes mean/std from the model (OpenAI's for ViT-H-14); its resize mode is fixed.
        self.mean = tuple(pp.get("mean", OPENAI_MEAN))
        self.std = tuple(pp.get("std", OPENAI_STD))

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.context_length)

    def count_truncated(self, prompts: list[str]) -> int:
        return sum(len(self.tokenizer.encode(p)) + 2 > self.context_length for p in prompts)

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        check_inputs(images, prompts)
        out = []
        for start in range(0, len(images), self.batch_size):
            pixels = hps_preprocess(images[start:start + self.batch_size], self.image_size, self.mean, self.std)
            text = self.tokenizer(list(prompts[start:start + self.batch_size]))
            with full_float32():
                image_features = self.model.encode_image(pixels.to(self.device, self.dtype), normalize=True)
                text_features = self.model.encode_text(text.to(self.device), normalize=True)
            out.append((image_features.double().cpu() * text_features.double().cpu()).sum(-1))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

    def info(self) -> dict[str, Any]:
        import torchvision

        return {
            "scorer": self.name,
            "checkpoint": self.checkpoint,
            "weights_file": str(self.weights),
            "weights_sha256": {self.weights.name: sha256_file(self.weights)},
            "architecture": self.architecture,
            "architecture_source": self.architecture_source,
            "preprocessing": {
                "transform": "hpsv2 image_transform(is_train=False, resize_longest_max=True)",
                "size": self.image_size, "resize": "longest side, float tensor", "interpolation": "bicubic",
                # torchvision >= 0.17 antialiases tensor resizes by default; older ones did not.
                "antialias": tuple(int(x) for x in torchvision.__version__.split(".")[:2]) >= (0, 17),
                "pad": "zeros to square, centred", "crop": None, "mean": list(self.mean), "std": list(self.std),
            },
            "text_max_length": self.context_length,
            "score": "cos(image, text) (diagonal of normalised image_features @ text_features.T)",
            "dtype": dtype_name(self.dtype),
            "versions": versions("torch", "torchvision", "open_clip_torch"),
        }


def _weights_path(path_or_id: str, key: str) -> tuple[Path, str]:
    local = resolve_dir_or_file(path_or_id)
    if local is not None and local.is_dir():
        for name in (FILENAME, Path(FILENAME).stem + ".safetensors"):
            if (local / name).is_file():
                return local / name, str(path_or_id)
        raise missing_error("the HPSv2.1 checkpoint", str(local / FILENAME),
                            f"hf download {REPO} {FILENAME} --local-dir DIR", key,
                            f"the folder has no {FILENAME} (or .safetensors)")
    if local is not None:
        return local, str(path_or_id)
    if is_hub_id(str(path_or_id)):
        return hub_file(str(path_or_id), FILENAME, "the HPSv2.1 checkpoint", key), str(path_or_id)
    raise missing_error("the HPSv2.1 checkpoint", str(path_or_id), f"hf download {REPO} {FILENAME} --local-dir DIR",
                        key, "no such file")


def load_hps(path_or_id: str = REPO, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             key: str = "metrics.hps.checkpoint", architecture: str | None = None, batch_size: int = 32) -> HPSv2:
    """HPSv2.1 from a checkpoint file, a folder holding ``HPS_v2.1_compressed.pt`` (or ``.safetensors``),
    or a hub id whose file is in the local cache. Weights are loaded strictly: every tensor must match."""
    open_clip = _require_open_clip()
    device = torch.device(device)
    weights, checkpoint = _weights_path(path_or_id, key)
    state = load_weights(weights, "the HPSv2 checkpoint", key)  # before building: a bad file fails in seconds
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # HPSv2's layout; a .safetensors holds the state dict itself
    state = tensors_only(state, "the HPSv2 checkpoint", weights)
    beside = weights.parent / CONFIG_NAME
    if architecture is None:
        arch, source = (f"local-dir:{weights.parent}", f"{beside}") if beside.is_file() \
            else (ARCHITECTURE, "HPSv2's built-in open_clip name")
    elif Path(architecture).expanduser().is_dir():
        arch, source = f"local-dir:{Path(architecture).expanduser()}", str(Path(architecture) / CONFIG_NAME)
    else:
        arch, source = architecture, "architecture argument"
    _refuse_transformers_towers(arch, key)
    try:
        with _quiet_root_logger():  # open_clip logs each config and tokenizer lookup on the root logger
            model = open_clip.create_model(arch, pretrained=None, load_weights=False, precision="fp32", device="cpu",
                                           output_dict=True)
            tokenizer = open_clip.get_tokenizer(arch)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        raise EvalrunError(f"could not build open_clip architecture {arch!r} for HPSv2: {exc}") from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # other shapes: another architecture's weights (strict=False forgives names only)
        setting = key.rsplit(".", 1)[0] + ".architecture"
        raise EvalrunError(
            f"the HPSv2 checkpoint {str(weights)!r} does not fit open_clip {arch!r}: {one_line(exc, 200)}; set "
            f"{setting} to the checkpoint's (ViT-H-14 for HPS_v2.1_compressed.pt) or {key} to a checkpoint of {arch}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise EvalrunError(
            f"the HPSv2 checkpoint {str(weights)!r} does not fit open_clip {arch!r}: missing "
            f"{result.missing_keys[:3]} ({len(result.missing_keys)}), unexpected {result.unexpected_keys[:3]} "
            f"({len(result.unexpected_keys)}); set {key} to HPS_v2.1_compressed.pt")
    model = model.to(device=device, dtype=dtype).eval()
    return HPSv2(model, tokenizer, weights, checkpoint, arch, source, device, dtype, batch_size)


def _refuse_transformers_towers(arch: str, key: str) -> None:
    """An open_clip config naming a transformers model (``text_cfg.hf_model_name``, ``hf_tokenizer_name``) has
    open_clip call ``AutoConfig``/``AutoTokenizer`` on it, and a folder with ``auto_map`` then asks whether to
    run its code (answered from stdin). HPSv2 is open_clip's own towers: such a config is refused."""
    if arch.startswith("hf-hub:"):
        raise ConfigError(f"{key}: architecture {arch!r} is read from the hub by open_clip; give a local folder "
                          f"with {CONFIG_NAME} or an open_clip model name (ViT-H-14)")
    if not arch.startswith("local-dir:"):
        return
    config = Path(arch.removeprefix("local-dir:")) / CONFIG_NAME
    try:
        cfg = json.loads(config.read_text(encoding="utf-8")).get("model_cfg") or {}
    except (OSError, ValueError, AttributeError):
        return  # open_clip reports it
    named = sorted(f"{tower}.{k}" for tower in ("text_cfg", "vision_cfg") for k in (cfg.get(tower) or {})
                   if k in ("hf_model_name", "hf_tokenizer_name") and (cfg.get(tower) or {})[k])
    if named:
        raise ConfigError(f"{config} names a transformers model ({', '.join(named)}): loading it may run code from "
                          f"that model's folder, which evalrun never does; HPSv2 uses open_clip's own towers: "
                          f"remove those keys, or set {key} to the HPSv2 checkpoint with its own config")


def tiny_config() -> dict[str, Any]:
    """A small open_clip CLIP with ViT-H-14's structure (ViT vision tower, causal text transformer,
    GELU, argmax pooling, 77-token context, the real BPE vocabulary) and its 224 px input."""
    return {
        "name": "evalrun-tiny-hps",
        "model_cfg": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 16, "patch_size": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        },
        "preprocess_cfg": {"size": 224, "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }


def build_tiny_hps(target: Path) -> None:
    """Random-weight HPSv2 twin: ``HPS_v2.1_compressed.pt`` (``{'state_dict': ...}`` saved with
    ``torch.save``, as the real file) and ``open_clip_config.json`` beside it."""
    open_clip = _require_open_clip()
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    config = tiny_config()
    (target / CONFIG_NAME).write_text(json.dumps(config, indent=1))
    torch.manual_seed(0)
    with _quiet_root_logger():
        model = open_clip.create_model(f"local-dir:{target}", pretrained=None, load_weights=False, output_dict=True)
    with torch.no_grad():  # spread the random embeddings so scores differ visibly between images
        model.visual.proj.mul_(4.0)
    torch.save({"state_dict": model.state_dict()}, target / FILENAME)
