"""Numerics settings that change numbers: kept in one place so every extractor uses the same."""

from __future__ import annotations

import contextlib

from evalrun.threads import FairRLock

# torch's TF32 switches are process-wide: while one thread samples (threads.Ahead), another must not
# flip them for feature extraction, so both hold this for as long as their switches must stay put.
TORCH_SWITCHES = FairRLock()


@contextlib.contextmanager
def full_float32():
    """Run convolutions and matmuls in true float32 on GPUs: the default TF32 on Ampere+
    (cudnn conv) changes features beyond float32 round-off, so a GPU-computed reference
    cache would not match CPU features; results record float32. Feature extraction always
    runs inside this, whatever the sampling options say about TF32."""
    import torch

    if not torch.cuda.is_available():
        yield
        return
    with TORCH_SWITCHES:
        matmul = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = matmul
