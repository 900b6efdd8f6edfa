"""Sampling speed options, off by default and recorded with the results, and the automatic batch size.

- ``compile``: ``torch.compile`` the denoiser (``true`` or a mode such as ``max-autotune-no-cudagraphs``);
- ``channels_last``: the denoiser's memory format (UNets on GPUs);
- ``attention``: a diffusers attention backend for models built on its attention dispatcher (FLUX,
  SD3, Sana...; ``native`` is torch SDPA, ``_native_flash`` / ``_native_efficient`` / ``_native_math``
  pick an SDPA kernel, ``flash`` / ``_flash_3`` / ``sage`` need their packages);
- ``tf32``: TF32 matmuls and convolutions while sampling, never while extracting features
  (feature extractors run inside ``numerics.full_float32``).

Each changes pixels at float round-off at most (TF32 and compiled kernels more than that), so each
is part of the generation key: images made with and without one are never mixed.

``batch_size=auto`` on CUDA finds the largest batch that fits by sampling one step at growing batch
sizes (a step's peak and the VAE decode of the whole batch are the peaks), once per (model, size,
dtype, guidance, device), and remembers it in the cache. An out-of-memory error during a run halves
the batch and goes on; finished images are never lost. Images do not depend on the batch size
(one generator per image), up to GPU kernel round-off, which is why the size used is recorded.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

from evalrun.errors import ConfigError, EvalrunError, true_or_false

log = logging.getLogger(__name__)
ATTENTION = ("native", "_native_cudnn", "_native_efficient", "_native_flash", "_native_math", "flash", "_flash_3",
             "flex", "sage")
# Backends that need a package of their own: (module, how to install it).
ATTENTION_PACKAGES = {"flash": ("flash_attn", "pip install flash-attn"),
                      "_flash_3": ("flash_attn_interface", "FlashAttention-3, built from flash-attention's hopper/"),
                      "sage": ("sageattention", "pip install sageattention")}
AUTO_START, AUTO_MAX = 8, 256
COMPILE_MODES = ("default", "lite", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")  # torch 2.14's


def options(cfg: Any) -> dict[str, Any]:
    """The speed options that are on (result columns and part of the generation key)."""
    out = {}
    for key in ("compile", "channels_last", "attention", "tf32"):
        value = cfg.get(key)
        if value not in (None, False, "none"):
            out[key] = value
    return out


def validate(cfg: Any) -> None:
    compile_ = cfg.get("compile")
    if not (compile_ is None or isinstance(compile_, bool) or compile_ in COMPILE_MODES):  # 1 == True: not a bool
        raise ConfigError(f"compile must be false, true or a torch.compile mode ({', '.join(COMPILE_MODES)}), "
                          f"got {compile_!r}")
    for key in ("channels_last", "tf32", "timing_warmup"):
        true_or_false(key, cfg.get(key))
    attention = cfg.get("attention")
    if attention not in (None, "none") and attention not in ATTENTION:
        raise ConfigError(f"attention={attention!r} is not a backend evalrun offers; use one of {', '.join(ATTENTION)}")
    package = ATTENTION_PACKAGES.get(attention)
    if package is not None:  # else diffusers says so only once the pipeline has loaded
        import importlib.util

        if importlib.util.find_spec(package[0]) is None:
            raise ConfigError(f"attention={attention} needs the {package[0]} module, which is not installed "
                              f"({package[1]}); or use attention=native")
    if str(cfg.get("device")) == "cpu":  # device=auto: checked once the device is resolved (check_device)
        check_device(cfg, "cpu")
    batch = cfg.get("batch_size")
    if batch != "auto" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"batch_size must be a positive integer or auto, got {batch!r}")


# SDPA kernels that exist only on CUDA (on the CPU, torch finds "no viable backend" mid-run).
CUDA_ATTENTION = ("_native_cudnn", "_native_efficient", "_native_flash", "flash", "_flash_3", "sage")


def check_device(cfg: Any, device_type: str) -> None:
    """Options that need a GPU, refused on another device before anything loads (they would fail mid-run,
    or do nothing while being recorded and keyed as if they had)."""
    if device_type == "cuda":
        return
    if cfg.get("attention") in CUDA_ATTENTION:
        raise ConfigError(f"attention={cfg.attention} needs CUDA; on {device_type} use attention=native or _native_math")
    if cfg.get("tf32"):
        raise ConfigError(f"tf32=true has no effect on {device_type} (TF32 is a CUDA matmul mode); remove it")
    if str(cfg.get("offload", "none")) == "sequential":
        raise ConfigError("offload=sequential needs a GPU (it streams weights to the accelerator); use offload=none "
                          f"with device={device_type}")


def apply(pipe: Any, opts: dict[str, Any]) -> None:
    """Apply the options to a freshly loaded pipeline (the pipeline cache is keyed by them)."""
    import torch

    from evalrun.cost import DENOISERS, denoiser

    module = denoiser(pipe)
    if module is None:
        if opts:
            raise EvalrunError(f"{type(pipe).__name__} has no denoiser module to apply {sorted(opts)} to")
        return
    if opts.get("channels_last"):
        if not any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):  # no 4-D activations to lay out
            raise ConfigError(f"channels_last=true has no effect on {type(module).__name__} (it has no convolutions); "
                              f"remove it")
        module.to(memory_format=torch.channels_last)
    if opts.get("attention"):
        set_attention(module, opts["attention"])
    if opts.get("compile"):
        mode = opts["compile"] if isinstance(opts["compile"], str) else None
        name = next(n for n in DENOISERS if getattr(pipe, n, None) is module)
        setattr(pipe, name, torch.compile(module, mode=mode))
    pipe._evalrun_tf32 = bool(opts.get("tf32"))


def set_attention(module: Any, backend: str) -> None:
    """``backend`` for the attention of ``module`` alone. diffusers' ``set_attention_backend`` also makes it
    the process-wide default, which every pipeline loaded later (a sweep's next job, without the option)
    then sampled with, recorded and keyed as without it: the default is put back. A model whose attention
    processors do not go through diffusers' dispatcher (the UNets' ``AttnProcessor2_0``) ignores it: refused."""
    name = type(module).__name__
    processors = {type(m.processor).__name__: m.processor for m in module.modules()
                  if getattr(m, "processor", None) is not None}
    if not hasattr(module, "set_attention_backend") or not any(hasattr(p, "_attention_backend")
                                                               for p in processors.values()):
        raise ConfigError(f"attention={backend} has no effect on {name} (its attention processors, "
                          f"{', '.join(sorted(processors)) or 'none'}, do not use diffusers' attention dispatcher); "
                          f"remove it")
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    default = _AttentionBackendRegistry._active_backend
    try:
        module.set_attention_backend(backend)
    except (ValueError, RuntimeError, ImportError, AttributeError) as exc:
        raise ConfigError(f"attention={backend!r} cannot be used with {name} here: {str(exc).splitlines()[0]}") from None
    finally:
        _AttentionBackendRegistry._active_backend = default


@contextlib.contextmanager
def sampling(pipe: Any) -> Iterator[None]:
    """TF32 while this pipeline samples, if its run asked for it; otherwise as torch's defaults are."""
    import torch

    if not getattr(pipe, "_evalrun_tf32", False) or not torch.cuda.is_available():
        yield
        return
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def auto_batch_size(probe: Callable[[int], None], memo_key: dict[str, Any], cache_file: Path, device: Any) -> int:
    """The largest batch (a power of two, at most AUTO_MAX) for which ``probe(batch)`` fits, remembered
    in ``cache_file`` under ``memo_key``. Off CUDA there is nothing to probe: 4."""
    import torch

    from evalrun.hashing import stable_hash

    if getattr(device, "type", str(device)) != "cuda":
        return 4
    key = stable_hash(memo_key)
    try:
        known = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return int(known[key])
    best, batch = 0, AUTO_START
    while batch <= AUTO_MAX:
        try:
            probe(batch)
            best = batch
            batch *= 2
        except Exception as exc:  # noqa: BLE001 - only an out-of-memory error ends the search
            if not is_out_of_memory(exc):
                raise
            break
        finally:
            torch.cuda.empty_cache()
    if best == 0:  # even AUTO_START failed: walk down
        batch = AUTO_START // 2
        while batch >= 1 and best == 0:
            try:
                probe(batch)
                best = batch
            except Exception as exc:  # noqa: BLE001
                if not is_out_of_memory(exc):
                    raise
                batch //= 2
            finally:
                torch.cuda.empty_cache()
    best = max(best, 1)
    known[key] = best
    from evalrun.results import atomic_write_text

    atomic_write_text(cache_file, json.dumps(known, indent=1))
    log.info("batch_size=auto: %d fits (remembered in %s)", best, cache_file)
    return best
