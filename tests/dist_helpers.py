"""Shared pieces of the distribution-metric tests: small backbones a user could write (importable as
``dist_helpers.ChannelMeans`` for the Python-class extractor, or scripted to TorchScript), images
whose features are points chosen by hand, direct float64 reference implementations, and a way to
run one metric over images without a pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from evalrun.metrics import ImageBatch, MetricContext, build_metric

# The tiny random Inception the tiny models' configs use (built once per session into the test
# cache): the distribution tests share its one build with the in-process runs.
INCEPTION = "evalrun/tiny-inception"


def inception_file() -> Path:
    from evalrun import tiny

    return Path(tiny.resolve(INCEPTION)) / "inception.pth"


class ChannelMeans(torch.nn.Module):
    """Features = mean of each colour channel (times ``scale``): a constant-colour image is a chosen point."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * self.scale


class WhiteIsNaN(ChannelMeans):
    """Channel means, NaN for an all-white image: a backbone that overflows on some inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return torch.where((x.flatten(1).min(1).values >= 1.0)[:, None], torch.full_like(out, float("nan")), out)


class TinyEncoder(torch.nn.Module):
    """A seeded conv encoder with ``dim`` outputs (deterministic weights, so a stable state_dict hash)."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2)
        self.head = torch.nn.Linear(6 * 4, dim)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        h = torch.nn.functional.adaptive_avg_pool2d(h, (2, 2)).flatten(1)
        return self.head(h)


def colour_images(colours: np.ndarray, size: int = 8) -> torch.Tensor:
    """uint8 (N, 3, size, size) images, each one constant colour (rows of ``colours``, uint8)."""
    c = torch.as_tensor(np.asarray(colours, np.uint8))
    return c[:, :, None, None].expand(-1, -1, size, size).contiguous()


def save_pngs(images: torch.Tensor, directory: Path) -> Path:
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(directory / f"{i:04d}.png")
    return directory


def run_metric(name: str, images: torch.Tensor, reference_dir: Path | None, cache: Path, seed: int = 0,
               reference: dict | None = None, chunk: int = 64, **settings):
    """build_metric -> update in chunks of 64 (the run's chunking) -> compute; (result, metric, warnings)."""
    ref = reference or ({"kind": "folder", "path": str(reference_dir)} if reference_dir else {"kind": "none"})
    metric = build_metric(name, settings, MetricContext(cache_dir=cache, reference=ref, seed=seed))
    metric.load()
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        metric.update(ImageBatch(part, [{"prompt": "x", "class_id": i % 3} for i in range(len(part))], start=start))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = metric.compute()
    return result, metric, [str(w.message) for w in caught]


def frechet64(a: np.ndarray, b) -> float:
    """Float64 Frechet distance written independently of evalrun: numpy mean/cov, and the trace of
    sqrt(S1 S2) from the eigenvalues of a symmetric matrix with the same non-zero spectrum.
    ``b``: features, or (mu, sigma)."""
    a = np.asarray(a, np.float64)
    if isinstance(b, tuple):
        mu2, s2 = np.asarray(b[0], np.float64), np.asarray(b[1], np.float64)
    else:
        b = np.asarray(b, np.float64)
        mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    s1 = np.cov(a, rowvar=False)
    if len(a) <= a.shape[1]:   # S1 = F^T F with F the (n, D) centred rows / sqrt(n-1)
        f = (a - a.mean(0)) / np.sqrt(len(a) - 1)
        eig = np.linalg.eigvalsh(f @ s2 @ f.T)
    else:
        w, v = np.linalg.eigh(s1)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        eig = np.linalg.eigvalsh(root @ s2 @ root)
    diff = a.mean(0) - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def numpy_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float, float, float]:
    """Naeem et al.'s definitions with full distance matrices (open balls, as the prdc package)."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)

    def dist(x, y):
        return np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))

    r_real = np.sort(dist(real, real), axis=1)[:, k]
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)
    precision = (d < r_real[:, None]).any(0).mean()
    recall = (d < r_fake[None, :]).any(1).mean()
    density = (d < r_real[:, None]).sum() / (k * len(fake))
    coverage = (d.min(1) < r_real).mean()
    return float(precision), float(recall), float(density), float(coverage)


def numpy_adm_pr(ref: np.ndarray, sample: np.ndarray, k: int) -> tuple[float, float]:
    """The evaluator's improved precision/recall in float64: squared distances, radius = (k+1)-th
    smallest incl. self, ``<=``; precision over samples, recall over reference."""
    ref, sample = np.asarray(ref, np.float64), np.asarray(sample, np.float64)

    def sq(x, y):
        return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)

    r_ref = np.sort(sq(ref, ref), axis=1)[:, k]
    r_sample = np.sort(sq(sample, sample), axis=1)[:, k]
    d = sq(ref, sample)
    return float((d <= r_ref[:, None]).any(0).mean()), float((d <= r_sample[None, :]).any(1).mean())


def direct_inception(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pool3, logits_unbiased, ADM spatial) from torch-fidelity's network called directly, the
    spatial map from a hook on Mixed_6d.branch1x1 and the evaluator's [..., :7] + NHWC flatten."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=str(inception_file())).eval()
    maps = []
    net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: maps.append(o))
    with torch.no_grad():
        pool, logits = net(images)
    spatial = maps[0].permute(0, 2, 3, 1).numpy()[..., :7]          # NHWC, as TensorFlow holds it
    return pool.numpy(), logits.numpy(), spatial.reshape(len(images), -1)
