"""What an image cost to make: denoiser evaluations, sampling seconds, peak accelerator memory.

NFE (number of function evaluations) is counted, not inferred from the scheduler: a hook on the
pipeline's denoiser (``unet``, ``transformer`` or ``prior``) adds up the batch rows of every
forward call, and the total is divided by the images of the call. Classifier-free guidance
that doubles the batch counts twice, true CFG's separate passes count twice, and a Heun-type
sampler's two evaluations per step count twice, whatever the pipeline does internally.

Seconds are those of a warm pipeline: the first call a pipeline object makes at a set of batch
shapes (``timing_warmup``, on by default) is an untimed warm-up with the same inputs. That call
compiles the denoiser (``compile=true``: 19 s against 1 s a batch after), selects kernels and
allocates; timed, it landed on whichever job of a sweep sampled first, so the seconds axis of a
cost plot depended on job order.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any, Iterator

from evalrun.metrics.base import Output

DENOISERS = ("unet", "transformer", "prior", "decoder")
# The cost columns every run writes (declared like metric outputs, metric name "cost").
OUTPUTS = (
    Output("nfe", "lower", kind="cost", fmt=".0f", label="NFE", unit="evaluations / image"),
    Output("sample_seconds_per_image", "lower", kind="cost", fmt=".3f", label="Sampling time", unit="s / image"),
    Output("peak_memory_gib", "lower", kind="cost", fmt=".2f", label="Peak GPU memory", unit="GiB"),
)
# Settings that change time and memory but not the images (result columns only when not at their defaults).
RUNTIME_OPTIONS = ("offload", "vae_tiling", "vae_slicing", "compile", "channels_last", "attention", "tf32",
                   "timing_warmup")
# Per pipeline object (dropped with it), the batch shapes it has been called at.
_WARM: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def depends_on(task: Any, cfg: Any) -> list[str]:
    """What the cost columns depend on: how the images were made (model, scheduler and its kwargs: Heun
    evaluates twice a step; every knob of the call: steps, guidance, strength, size...), the batch, dtype
    and device, and the memory and speed options. Not the seed, nor how many images."""
    knobs = [k for k in task.column_keys(cfg) if k not in ("seed", "num_images", "num_images_per_prompt")]
    return list(dict.fromkeys(["model", "scheduler", "scheduler_kwargs", *knobs, "batch_size", "dtype", "device",
                               *RUNTIME_OPTIONS]))


def denoiser(pipe: Any):
    """The module whose forward passes are the function evaluations (None if the pipeline has none)."""
    for name in DENOISERS:
        module = getattr(pipe, name, None)
        if module is not None and hasattr(module, "register_forward_pre_hook"):
            return module
    return None


def _shape(value: Any) -> Any:
    if hasattr(value, "shape"):
        return tuple(value.shape)
    if isinstance(getattr(value, "size", None), tuple):  # a PIL image
        return value.size
    if isinstance(value, (list, tuple)):
        inner = tuple(_shape(v) for v in value)
        return inner if any(s is not None for s in inner) else None
    return None


def call_shapes(kwargs: dict[str, Any], n_images: int) -> tuple:
    """A pipeline call's shapes: its batch, size and input tensors or images (text and scalars do not
    reshape a compiled denoiser)."""
    return (n_images, kwargs.get("height"), kwargs.get("width"),
            *sorted((k, s) for k, v in kwargs.items() if (s := _shape(v)) is not None))


def is_warm(pipe: Any, shapes: tuple) -> bool:
    try:
        return shapes in _WARM.get(pipe, ())
    except TypeError:  # not weakly referable: warmed up before every call rather than timed cold
        return False


def mark_warm(pipe: Any, shapes: tuple) -> None:
    with contextlib.suppress(TypeError):
        _WARM.setdefault(pipe, set()).add(shapes)


def _rows(args: tuple, kwargs: dict) -> int:
    """Batch rows of a denoiser call: its first tensor argument's leading dimension."""
    for value in list(args) + [kwargs.get(k) for k in ("sample", "hidden_states", "x")]:
        if hasattr(value, "shape") and len(value.shape) > 0:
            return int(value.shape[0])
    return 0


@contextlib.contextmanager
def measure(pipe: Any, n_images: int) -> Iterator[dict[str, float | None]]:
    """Count denoiser rows, time the block and read peak CUDA memory; fills the yielded dict with
    ``nfe`` (per image), ``seconds`` (per image) and ``peak_gib`` (None off CUDA)."""
    import torch

    result: dict[str, float | None] = {"nfe": None, "seconds": None, "peak_gib": None}
    rows = [0]
    module = denoiser(pipe)
    handle = None
    if module is not None:
        handle = module.register_forward_pre_hook(lambda _m, args, kwargs: rows.__setitem__(0, rows[0] + _rows(args, kwargs)),
                                                  with_kwargs=True)
    device = _cuda_device(pipe, module) if torch.cuda.is_available() else None
    cuda = device is not None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield result
    finally:
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if handle is not None:
            handle.remove()
    result["seconds"] = elapsed / max(n_images, 1)
    result["nfe"] = rows[0] / max(n_images, 1) if module is not None else None
    result["device"] = device_name(device if cuda else "cpu")
    if cuda:
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30


def _cuda_device(pipe: Any, module: Any) -> Any:
    """The CUDA device the call samples on, or None. An offloaded pipeline (offload=model or sequential) keeps
    its denoiser on the CPU (or meta) between calls: its accelerate hooks' execution device says where it runs
    (read only then: the property walks the pipeline's modules)."""
    for p in (module.parameters() if module is not None else ()):
        if p.is_cuda:
            return p.device
    device = getattr(pipe, "_execution_device", None)
    return device if getattr(device, "type", None) == "cuda" else None


def device_name(device: Any) -> str:
    """What a timing was measured on: the GPU's model, or ``cpu``."""
    if getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return "cpu"
    import torch

    return torch.cuda.get_device_name(device)


def timed_here(costs: list[dict[str, Any]], batch_size: int, device: str) -> list[dict[str, Any]]:
    """The costs timed as this run would time them: at its batch size, on its device. An image reused from
    the store keeps the time of the run that sampled it, which may have batched it differently or run on
    another GPU: its seconds and memory describe that run, not this one (its NFE is the same)."""
    return [c for c in costs if c.get("batch_size") == batch_size and c.get("device") == device]


def summarise(costs: list[dict[str, Any]], timed: list[dict[str, Any]]) -> dict[str, float | None]:
    """Run-level cost columns from per-image costs: NFE over every image; seconds and peak memory over the
    ``timed`` ones (:func:`timed_here`)."""
    import math

    def mean(key: str, among: list[dict[str, Any]]) -> float | None:
        vals = [c[key] for c in among if c.get(key) is not None]
        return sum(vals) / len(vals) if vals else math.nan

    peaks = [c["peak_gib"] for c in timed if c.get("peak_gib") is not None]
    return {"nfe": mean("nfe", costs), "sample_seconds_per_image": mean("seconds", timed),
            "peak_memory_gib": max(peaks) if peaks else math.nan}
