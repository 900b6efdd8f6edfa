"""What an image cost to make: denoiser evaluations, sampling seconds, peak accelerator memory.

NFE (number of function evaluations) is counted, not inferred from the scheduler: a hook on the
pipeline's denoiser (``unet``, ``transformer`` or ``prior``) adds up the batch rows of every
forward call, and the total is divided by the images of the call. Classifier-free guidance
that doubles the batch counts twice, true CFG's separate passes count twice, and a Heun-type
sampler's two evaluations per step count twice, whatever the pipeline does internally.

Seconds are those of a warm pipeline (``timing_warmup``, on by default): a call in which the
denoiser met an input shape it had not run before (a new batch, size, or CFG switched on or off) is
made again, and the second call is the one timed and kept (the same generators: the same pixels).
The first call at a shape compiles the denoiser (``compile=true``: 19 s against 1 s a batch
after), selects kernels and allocates; timed, it landed on whichever job of a sweep sampled first,
so the seconds axis of a cost plot depended on job order. Each image's cost records the setting,
and a run counts only timings made under its own.
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
# Per denoiser module (dropped with it), the input shapes it has run.
_SEEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def _latent(args: tuple, kwargs: dict) -> tuple:
    """The shape of a denoiser call's latent input: its first tensor argument (the batch rows lead)."""
    for value in list(args) + [kwargs.get(k) for k in ("sample", "hidden_states", "x")]:
        if hasattr(value, "shape") and len(value.shape) > 0:
            return tuple(value.shape)
    return ()


def _first_time(module: Any, shapes: set) -> bool:
    """Whether ``module`` ran any of ``shapes`` for the first time (remembered from now on)."""
    try:
        seen = _SEEN.setdefault(module, set())
    except TypeError:  # not weakly referable: every call counts as warm, as before this check
        return False
    new = bool(shapes - seen)
    seen |= shapes
    return new


@contextlib.contextmanager
def measure(pipe: Any, n_images: int) -> Iterator[dict[str, float | None]]:
    """Count denoiser rows, time the block and read peak CUDA memory; fills the yielded dict with
    ``nfe`` (per image), ``seconds`` (per image), ``peak_gib`` (None off CUDA) and ``cold`` (the denoiser
    met an input shape it had not run before: the time includes its first-call costs)."""
    import torch

    result: dict[str, Any] = {"nfe": None, "seconds": None, "peak_gib": None, "cold": False}
    rows, shapes = [0], set()
    module = denoiser(pipe)
    handle = None

    def seen(_module: Any, args: tuple, kwargs: dict) -> None:
        latent = _latent(args, kwargs)
        rows[0] += int(latent[0]) if latent else 0
        shapes.add(latent)

    if module is not None:
        handle = module.register_forward_pre_hook(seen, with_kwargs=True)
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
    result["cold"] = module is not None and _first_time(module, shapes)
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


def timed_here(costs: list[dict[str, Any]], batch_size: int, device: str, warmup: bool = True,
               reused: list[bool] | None = None) -> list[dict[str, Any]]:
    """The costs timed as this run would time them: at its batch size, on its device, with its ``timing_warmup``
    (images stored before it was recorded count as timed without). An image reused from the store keeps the
    time of the run that sampled it, which may have batched it differently, run on another GPU or timed a
    cold call: its seconds and memory describe that run, not this one (its NFE is the same). ``reused`` (per
    cost, in run order): a reused image counts only if it was sampled in a call of the size this run makes
    for it (``call_images``: full batches, and the last one's remainder; a cost stored before it was recorded
    counts), not from another run's last, smaller call; a run re-made from the store times as the first did."""
    reused = reused or [False] * len(costs)

    def call_size(n: int) -> int:  # this run's calls: consecutive batches of batch_size in run order
        return min(batch_size, len(costs) - n // batch_size * batch_size)

    return [c for n, (c, other) in enumerate(zip(costs, reused))
            if c.get("batch_size") == batch_size and c.get("device") == device
            and bool(c.get("timing_warmup", False)) == warmup
            and (not other or c.get("call_images", call_size(n)) == call_size(n))]


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
