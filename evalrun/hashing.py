"""Content identities: what a cache or resume key is built from, never a path alone.

A weights file is identified by its sha256. Hashing a multi-GB checkpoint takes seconds to
minutes, so digests are remembered per (resolved path, size, mtime): a file changed in place
gets a new mtime and is hashed again; an unchanged one is hashed once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

CHUNK = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".pkl", ".npz", ".onnx", ".gguf")
# Configs, vocabularies, sentencepiece models and chat templates (Z-Image, Qwen-Image: the prompt's wrapper).
TOKENIZER_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken")
_MEMO: dict[tuple[str, int, int], str] = {}


def stable_hash(data: Any, length: int = 16) -> str:
    """Short content hash of JSON-able data (keys sorted), for cache and resume keys."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def bytes_hash(*parts: bytes | memoryview, length: int = 32) -> str:
    """A fast content hash (blake2b) for pixels and feature chunks: of the parts joined, without joining them."""
    digest = hashlib.blake2b(digest_size=length // 2)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _digest_cache_file(path: Path) -> Path:
    from evalrun.paths import cache_dir

    return cache_dir() / "hashes" / (hashlib.sha1(str(path).encode()).hexdigest() + ".json")


def file_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """What says a file is unchanged without reading it: size, mtime, inode and ctime. A replacement that keeps
    size and mtime (``cp -p``, ``rsync -a`` of a same-sized file) still moves the ctime (or the inode)."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def path_stamp(value: Any) -> tuple | None:
    """A local file's stamp, or a folder's (each file's, walked): what says that weights loaded once in this
    process are still what the path holds (a model folder re-saved between two calls is loaded again).
    None for anything else (a hub id: its snapshot is named by revision)."""
    if not isinstance(value, (str, os.PathLike)):
        return None
    path = os.path.expanduser(str(value))
    if os.path.isfile(path):
        return file_stamp(os.stat(path))
    if not os.path.isdir(path):
        return None
    found = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            found.append((os.path.relpath(full, path), *file_stamp(os.stat(full))))
    return tuple(sorted(found))


def file_sha256(path: str | os.PathLike, _resolved: os.stat_result | None = None) -> str:
    """sha256 of a file's content, remembered (in memory and in the cache) while its size, mtime, inode and
    ctime hold: a replacement that keeps size and mtime (``cp -p``, ``rsync -a``) still changes the ctime.
    (``_resolved``: the stat of ``path``, already an absolute real path; tree_fingerprint passes it.)"""
    path = Path(path) if _resolved is not None else Path(path).expanduser().resolve()
    st = _resolved if _resolved is not None else path.stat()
    key = (str(path), *file_stamp(st))
    if key in _MEMO:
        return _MEMO[key]
    record = _digest_cache_file(path)
    try:
        saved = json.loads(record.read_text())
        if [saved.get(k) for k in ("size", "mtime_ns", "ino", "ctime_ns")] == list(key[1:]):
            _MEMO[key] = saved["sha256"]
            return _MEMO[key]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    _MEMO[key] = digest.hexdigest()
    try:
        from evalrun.results import atomic_write_text

        atomic_write_text(record, json.dumps({"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                              "ino": st.st_ino, "ctime_ns": st.st_ctime_ns, "sha256": _MEMO[key]}))
    except OSError:  # a read-only cache only costs a re-hash next time
        pass
    return _MEMO[key]


def same_numbers(value: Any) -> Any:
    """``value`` with whole floats as ints, all the way down (bools untouched): ``shift=3`` and ``shift=3.0``
    sample the same images and are one configuration, so keys and columns must not tell them apart."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: same_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [same_numbers(v) for v in value]
    return value


def tree_fingerprint(root: str | os.PathLike, suffixes: Iterable[str] = WEIGHT_SUFFIXES + TOKENIZER_SUFFIXES
                     ) -> dict[str, str]:
    """{relative path: sha256} of a local model folder's weights and configs (what loading reads)."""
    # One directory walk (a sweep asks once per job): the root is resolved once, and only symlinked
    # files (hub snapshots link into blobs/) are resolved one by one.
    real_root = os.path.realpath(Path(root).expanduser())
    suffixes = tuple(suffixes)
    found = {}
    for folder, dirs, files in os.walk(real_root, followlinks=True):  # as rglob did
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .cache folders: not part of the model
        for name in files:
            if name.startswith(".") or not name.lower().endswith(suffixes):
                continue  # .complete markers
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, real_root).replace(os.sep, "/")
            if os.path.islink(path):
                if os.path.isfile(path):  # a broken link is not a file of the model
                    found[rel] = file_sha256(path)
            else:
                found[rel] = file_sha256(path, _resolved=os.stat(path))
    return dict(sorted(found.items()))


def local_identity(path: str | os.PathLike | None) -> str | None:
    """One hash for a local file or folder's content; None for hub ids and missing paths."""
    if path in (None, "", "???"):
        return None
    p = Path(str(path)).expanduser()
    if p.is_file():
        return file_sha256(p)
    if p.is_dir():
        return stable_hash(tree_fingerprint(p), length=64)
    return None


def pretrained_files_identity(name_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """The sha256 of every weights/config file ``from_pretrained(name_or_path)`` reads: a local folder's
    files, or the hub snapshot already in the local Hugging Face cache (no network). Empty when neither
    can be found (the caller then hashes loaded tensors)."""
    p = Path(str(name_or_path)).expanduser()
    if p.is_dir():
        return {"files": tree_fingerprint(p)}
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(str(name_or_path), revision=revision, local_files_only=True)
    except Exception:  # not cached, or not a hub id: nothing to hash from disk
        return {}
    return {"files": tree_fingerprint(folder), "snapshot": Path(folder).name}


def tensors_sha256(modules: dict[str, Any]) -> str:
    """sha256 over named modules' tensors (names, shapes, dtypes and bytes), for models with no files."""
    import torch

    digest = hashlib.sha256()
    for prefix, module in modules.items():
        for name, tensor in sorted(module.state_dict().items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{prefix}.{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
