"""Tiny random-weight models for offline smoke runs and tests.

A name such as ``evalrun/tiny-sd`` looks like a hub id but is served from the evalrun
cache: the first use builds the model from configs (seeded, so every machine gets the same
weights), saves it with ``save_pretrained`` and from then on it loads through exactly the
same ``from_pretrained`` code as a real checkpoint. Numbers computed with these models mean
nothing: they exist so the whole flow can be exercised without a GPU or a network. Each
built folder carries :data:`MARKER`, and a run is flagged as a smoke run when the folder it
actually loaded has it (not because of a preset's name). The marker also records a digest of the
builder's source: a folder built by an older builder (a changed twin) is rebuilt on its next use.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import re
import shutil
import tempfile
from pathlib import Path

TINY_PREFIX = "evalrun/tiny-"
MARKER = "EVALRUN_RANDOM_WEIGHTS"

# name -> "module:function" building the model into a directory; imported on first use, so
# every tiny name resolves whichever modules a process happened to import before.
BUILDERS: dict[str, str] = {
    "evalrun/tiny-sd": "evalrun.tiny.sd:build_tiny_sd",
    "evalrun/tiny-sd-v": "evalrun.tiny.sd:build_tiny_sd_v",
    "evalrun/tiny-pix2pix": "evalrun.tiny.sd:build_tiny_pix2pix",
    "evalrun/tiny-clip": "evalrun.tiny.sd:build_tiny_clip",
    "evalrun/tiny-dit": "evalrun.tiny.unet:build_tiny_dit",
    "evalrun/tiny-ddpm": "evalrun.tiny.unet:build_tiny_ddpm",
    # Current text-to-image families (real component classes, latent layouts and shipped scheduler
    # configs at toy width); each module says which checkpoint it mirrors.
    "evalrun/tiny-sdxl": "evalrun.tiny.sdxl:build_tiny_sdxl",
    "evalrun/tiny-sdxl-turbo": "evalrun.tiny.sdxl:build_tiny_sdxl_turbo",
    "evalrun/tiny-sd3": "evalrun.tiny.sd3:build_tiny_sd3",
    "evalrun/tiny-flux": "evalrun.tiny.flux:build_tiny_flux",
    "evalrun/tiny-flux-schnell": "evalrun.tiny.flux:build_tiny_flux_schnell",
    "evalrun/tiny-flux-kontext": "evalrun.tiny.flux:build_tiny_flux_kontext",
    "evalrun/tiny-flux2": "evalrun.tiny.flux2:build_tiny_flux2",
    "evalrun/tiny-chroma": "evalrun.tiny.flux:build_tiny_chroma",
    "evalrun/tiny-sana": "evalrun.tiny.sana:build_tiny_sana",
    "evalrun/tiny-pixart-sigma": "evalrun.tiny.pixart:build_tiny_pixart_sigma",
    "evalrun/tiny-qwen-image": "evalrun.tiny.qwenimage:build_tiny_qwenimage",
    "evalrun/tiny-qwen-image-edit": "evalrun.tiny.qwenimage:build_tiny_qwenimage_edit",
    "evalrun/tiny-z-image": "evalrun.tiny.zimage:build_tiny_zimage",
    "evalrun/tiny-lumina2": "evalrun.tiny.lumina2:build_tiny_lumina2",
    "evalrun/tiny-cogview4": "evalrun.tiny.cogview4:build_tiny_cogview4",
    "evalrun/tiny-inception": "evalrun.metrics.features.inception:build_tiny_inception",
    "evalrun/tiny-dinov2": "evalrun.metrics.features.dinov2:build_tiny_dinov2",
    "evalrun/tiny-pickscore": "evalrun.metrics.preference.pickscore:build_tiny_pickscore",
    "evalrun/tiny-hps": "evalrun.metrics.preference.hps:build_tiny_hps",
    "evalrun/tiny-image-reward": "evalrun.metrics.preference.image_reward_tiny:build_tiny_image_reward",
}


def is_tiny(name: str | os.PathLike | None) -> bool:
    return str(name).startswith(TINY_PREFIX)


def is_random_weights(local_dir: str | os.PathLike) -> bool:
    """Whether a local model folder was built by a tiny builder (random weights)."""
    return (Path(local_dir) / MARKER).exists()


def resolve(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Map ``evalrun/tiny-*`` names to a local directory, building it once; pass others through."""
    from evalrun.errors import ConfigError
    from evalrun.paths import cache_dir as default_cache

    name = str(name_or_path)
    if not is_tiny(name):
        return name
    if name not in BUILDERS:
        raise ConfigError(f"unknown tiny model {name!r}; known: {', '.join(sorted(BUILDERS))}")
    target = default_cache(cache_dir) / name.replace("/", "--")
    if _built_by_current(target, name):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build into a temp dir and rename, so an interrupted build never leaves a half model behind
    # (a later run removes such leftovers an hour old: ``results.clean_stale_partials``).
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".partial.", dir=target.parent))
    try:
        module, func = BUILDERS[name].split(":")
        getattr(importlib.import_module(module), func)(tmp)
        (tmp / MARKER).write_text(f"random weights, built by {BUILDERS[name]}; numbers computed with them mean nothing\n"
                                  f"{DIGEST_LINE}{builder_digest(name)}\n")
        from evalrun.results import shared_mode

        shared_mode(tmp, directory=True)  # mkdtemp makes 0700: the cache may be shared by a lab
        if not _built_by_current(target, name):  # another process may have finished first: keep its build
            if (target / MARKER).exists():  # an older builder's: moved aside (a process may be reading it),
                # and removed with other leftovers an hour later (results.clean_stale_partials)
                with contextlib.suppress(OSError):
                    target.rename(Path(tempfile.mkdtemp(prefix=target.name + ".partial.", dir=target.parent))
                                  / "stale")
            shutil.rmtree(target, ignore_errors=True)  # a folder without the marker is a broken leftover
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not _built_by_current(target, name):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


DIGEST_LINE = "builder digest: "


@functools.lru_cache(maxsize=None)
def builder_digest(name: str) -> str:
    """sha256 of the builder's module and of every evalrun module it imports, transitively: what builds it
    (the ImageReward twin takes its sizes from the metric's module, the Qwen-Image twins their tokenizers from another)."""
    digest = hashlib.sha256()
    for path in sorted(_sources(BUILDERS[name].split(":")[0])):
        digest.update(str(path.relative_to(_PACKAGE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


_PACKAGE = Path(__file__).resolve().parent.parent  # evalrun/
_IMPORTS = re.compile(r"^\s*(?:from\s+(evalrun(?:\.\w+)*)\s+import\s+([\w, ()]+)|import\s+(evalrun(?:\.\w+)*))", re.M)


def _sources(module: str) -> set[Path]:
    """The files of ``module`` and of the evalrun modules it imports, found by reading the source (nothing is
    imported: a builder's module may import torch)."""
    found: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        base = _PACKAGE.parent.joinpath(*name.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if path in found or not path.is_file():
            continue
        found.add(path)
        for match in _IMPORTS.finditer(path.read_text(encoding="utf-8")):
            if match.group(3):
                todo.append(match.group(3))
            else:  # from evalrun.x import y: y may be a module of the package x
                todo.append(match.group(1))
                todo += [f"{match.group(1)}.{item.strip()}" for item in match.group(2).strip("()").split(",")
                         if item.strip()]
    return found


def _built_by_current(folder: Path, name: str) -> bool:
    """Whether ``folder`` is a finished build (it has the marker) by this version of its builder."""
    try:
        text = (folder / MARKER).read_text(encoding="utf-8")
    except OSError:
        return False
    return f"{DIGEST_LINE}{builder_digest(name)}" in text.splitlines()
