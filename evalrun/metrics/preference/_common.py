"""What the preference scorers share: the interface, safe weight loading, file resolution, errors.

Every scorer takes uint8 (N, 3, H, W) images and one prompt per image and returns one
float64 score per image, computed the way the model's authors compute it. Weights are
read without running pickled code: ``.safetensors`` directly, ``.pt``/``.pth``/``.bin``
only through ``torch.load(weights_only=True)``; a checkpoint that needs more is refused.
"""

from __future__ import annotations

import abc
import importlib.metadata
import os
import re
from pathlib import Path
from typing import Any

import torch

import evalrun.tiny as tiny
from evalrun.errors import EvalrunError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class Scorer(abc.ABC):
    """A text-image preference model: ``score`` maps images + prompts to one number per image."""

    name: str = ""
    higher_is_better: bool = True

    @abc.abstractmethod
    def score(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """uint8 (N, 3, H, W) images and N prompts -> float64 (N,) scores on CPU."""

    @abc.abstractmethod
    def count_truncated(self, prompts: list[str]) -> int:
        """How many prompts are longer than the text encoder's context (they are truncated)."""

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """Everything the scores depend on: checkpoint, sha256 of every weights file, preprocessing,
        text length, dtype, library versions."""


# ----------------------------------------------------------------------------- inputs
def check_inputs(images: torch.Tensor, prompts: list[str]) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        dtype = images.dtype if isinstance(images, torch.Tensor) else ""
        raise ValueError(f"preference scorers want uint8 (N, 3, H, W) images, got {dtype} {shape}")
    if len(prompts) != len(images):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts: give one prompt per image")


def to_pil(images: torch.Tensor) -> list:
    """uint8 (N, 3, H, W) -> RGB PIL images (what the authors' snippets open from files)."""
    from PIL import Image

    return [Image.fromarray(img.permute(1, 2, 0).contiguous().cpu().numpy(), mode="RGB") for img in images]


# ----------------------------------------------------------------------------- provenance
def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, size, mtime) in memory and in the evalrun cache
    (``evalrun.hashing.file_sha256``): a multi-GB checkpoint is hashed once per machine, not per job."""
    from evalrun.hashing import file_sha256

    return file_sha256(path)


def versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# ----------------------------------------------------------------------------- errors
def missing_error(what: str, name: str, download: str, key: str, reason: str = "") -> EvalrunError:
    """One line in the style of ``evalrun.errors.load_error``: what failed, the file to get, the key to set."""
    reason = reason or "it is not on disk and the hub cannot be reached"
    return EvalrunError(f"could not load {what} {name!r}: {reason}. Download it once where there is network "
                        f"(`{download}`) and set {key}=DIR")


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


# ----------------------------------------------------------------------------- files
def is_hub_id(name: str) -> bool:
    """``owner/name`` that is not a local path (a missing ``dir/file.pt`` is a missing file, not a repo)."""
    path = Path(name).expanduser()
    return bool(_HUB_ID.match(name)) and not path.exists() and path.suffix not in (".pt", ".pth", ".bin",
                                                                                  ".safetensors", ".json")


def resolve_dir_or_file(path_or_id: str) -> Path | None:
    """A tiny name -> its built folder; an existing local path -> itself; anything else -> None."""
    name = str(path_or_id)
    if tiny.is_tiny(name):
        return Path(tiny.resolve(name))
    path = Path(name).expanduser()
    return path if path.exists() else None


def hub_file(repo_id: str, filename: str, what: str, key: str, download: str | None = None) -> Path:
    """``filename`` from hub repo ``repo_id``: the local cache offline, a download online; one-line error
    (``download``: the command the error suggests, by default ``hf download REPO FILENAME``)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as exc:  # offline, missing file, gated repo, no network: all fixed the same way
        text = one_line(exc)
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or any(
            s in text.lower() for s in ("offline", "connection", "resolve", "couldn't reach", "cannot find"))
        download = download or f"hf download {repo_id} {filename} --local-dir DIR"
        raise missing_error(what, f"{repo_id}/{filename}", download, key, "" if offline else text) from None


def load_weights(path: str | os.PathLike, what: str, key: str) -> dict[str, Any]:
    """A checkpoint file as a dict, without executing pickled code (``key``: the setting that named it).

    ``.safetensors`` is read with safetensors; anything else with ``torch.load(weights_only=True)``,
    which only rebuilds tensors, numbers, strings and containers. A pickle that needs any other
    object (a whole ``nn.Module``, a custom class, a ``__reduce__`` payload) is refused here.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if not _is_checkpoint(path):
            raise EvalrunError(f"{what} {str(path)!r} is not a checkpoint file (neither torch.save's zip nor a "
                               f"pickle, nor .safetensors); point {key} at the checkpoint itself") from None
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "Weights only load failed" in str(exc):
            raise EvalrunError(f"refusing to load {what} {str(path)!r}: it is a pickle that needs more than tensors "
                               f"(torch.load(weights_only=True) refused it: {one_line(exc, 160)}); evalrun never "
                               f"runs pickled code: convert it to a plain state dict or .safetensors where you "
                               f"trust it") from None
        raise EvalrunError(f"could not read {what} {str(path)!r}: {one_line(exc)}") from None
    if not isinstance(obj, dict):
        raise EvalrunError(f"{what} {str(path)!r} holds a {type(obj).__name__}, not a dict of tensors")
    return obj


def _is_checkpoint(path: Path) -> bool:
    """What torch.save writes: a zip archive, or (the legacy format) a pickle, which starts with its protocol
    byte 0x80 (a text file passed by mistake starts otherwise)."""
    import zipfile

    try:
        with open(path, "rb") as fh:
            first = fh.read(1)
        return first == b"\x80" or zipfile.is_zipfile(path)
    except OSError:
        return True  # unreadable: torch's own error says why


def tensors_only(state: dict[str, Any], what: str, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise EvalrunError(f"{what} {str(path)!r}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    return state
