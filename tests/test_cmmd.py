"""CMMD: the RBF-kernel MMD against a float64 numpy implementation, and the metric on the
tiny random CLIP against embeddings computed directly with transformers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import inception_weights as iw  # noqa: E402
from evalrun.errors import EvalrunError  # noqa: E402
from evalrun.metrics import ImageBatch, MetricContext, build_metric  # noqa: E402
from evalrun.metrics.functional.mmd import rbf_mmd2  # noqa: E402

CLIP = "evalrun/tiny-clip"


def numpy_cmmd(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    """Straight from the definition: explicit pairwise differences, all pairs, float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def k(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * sigma ** 2))

    return scale * (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_rbf_mmd_matches_numpy_float64():
    rng = np.random.default_rng(0)
    for spread in (0.1, 3.0, 12.0):  # inside, around and beyond sigma = 10
        x = rng.normal(size=(20, 16)) * spread
        y = rng.normal(size=(13, 16)) * spread + 0.5
        ours, ref = rbf_mmd2(x, y), numpy_cmmd(x, y)
        assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12), spread
        assert rbf_mmd2(x, y, sigma=2.0, scale=1.0) == pytest.approx(numpy_cmmd(x, y, 2.0, 1.0), rel=1e-9, abs=1e-12)
    assert abs(rbf_mmd2(x, x)) < 1e-12
    # Blocked (3 and 7 rows at a time, blocks that do not divide N): the same number as all pairs at once.
    for rows in (3, 7):
        assert rbf_mmd2(x, y, rows=rows) == pytest.approx(numpy_cmmd(x, y), rel=1e-12, abs=1e-14)


def test_rbf_mmd_memory_grows_with_n_not_n_squared(monkeypatch):
    """No kernel matrix larger than ROWS x M is ever built (all pairs at once of a 30k reference: 21 GiB)."""
    import evalrun.metrics.functional.mmd as mmd

    largest, exp = [0], torch.exp

    def watched(t, *args, **kwargs):
        largest[0] = max(largest[0], t.numel())
        return exp(t, *args, **kwargs)

    monkeypatch.setattr(mmd.torch, "exp", watched)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2500, 4)), rng.normal(size=(2000, 4))
    mmd.rbf_mmd2(x, y)
    assert largest[0] == mmd.ROWS * 2500  # the widest block: ROWS rows of x against all of x


def _perturbed(images: torch.Tensor, strength: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen) * strength
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def _cmmd(images: torch.Tensor, context: MetricContext, batch_size: int = 6):
    metric = build_metric("cmmd", {"clip_model": CLIP, "batch_size": batch_size}, context)
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        metric.update(ImageBatch(chunk, [{"prompt": "x"} for _ in chunk]))
    return metric.compute()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    real = iw.load_photos(64)
    tmp = tmp_path_factory.mktemp("cmmd")
    ref_dir = iw.save_pngs(real, tmp / "reference")
    context = MetricContext(cache_dir=tmp / "cache", reference={"kind": "folder", "path": str(ref_dir)}, seed=0)
    return {"real": real, "context": context}


def test_cmmd_matches_transformers_embeddings_and_numpy(setup):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from evalrun import tiny

    fake = _perturbed(setup["real"], 40.0)
    result = _cmmd(fake, setup["context"])
    path = tiny.resolve(CLIP)
    model = CLIPVisionModelWithProjection.from_pretrained(path).eval()
    processor = CLIPImageProcessor.from_pretrained(path)

    def embed(images):
        pixels = processor(images=[im.permute(1, 2, 0).numpy() for im in images], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            e = model(pixel_values=pixels).image_embeds.double().numpy()
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    ref = numpy_cmmd(embed(fake), embed(setup["real"]))
    print(f"\nCMMD evalrun {result.values['cmmd']:.9g} transformers+numpy {ref:.9g} (rel {iw.rel(result.values['cmmd'], ref):.1e})")
    assert result.values["cmmd"] > 0
    assert result.values["cmmd"] == pytest.approx(ref, rel=1e-5)


def test_cmmd_is_zero_on_the_same_set_and_grows_with_perturbation(setup):
    same = _cmmd(setup["real"], setup["context"]).values["cmmd"]
    weak = _cmmd(_perturbed(setup["real"], 15.0), setup["context"]).values["cmmd"]
    strong = _cmmd(_perturbed(setup["real"], 60.0), setup["context"]).values["cmmd"]
    print(f"\nCMMD same {same:.2e}, noise 15: {weak:.4g}, noise 60: {strong:.4g}")
    assert abs(same) < 1e-6 * strong
    assert 0 < weak < strong


def test_cmmd_records_settings_and_reuses_the_cached_reference(setup):
    result = _cmmd(setup["real"][:4], setup["context"], batch_size=4)
    info = result.info
    assert info["reference_cache"] == "hit" and info["reference_n"] == len(setup["real"])
    assert info["cmmd_n_generated"] == 4 and info["cmmd_sigma"] == 10.0 and info["cmmd_scale"] == 1000.0
    import hashlib

    from evalrun import tiny
    weights = Path(tiny.resolve(CLIP)) / "model.safetensors"
    assert info["clip_model"] == CLIP
    assert info["clip_weights"]["files"]["model.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "V-statistic" in info["cmmd_estimator"] and "CLIPImageProcessor" in info["cmmd_preprocessing"]


def test_cmmd_defaults_follow_the_paper():
    import inspect

    from evalrun.metrics.cmmd import CMMD

    defaults = {k: p.default for k, p in inspect.signature(CMMD.__init__).parameters.items()}
    assert defaults["clip_model"] == "openai/clip-vit-large-patch14-336"
    assert defaults["sigma"] == 10.0 and defaults["scale"] == 1000.0
    assert CMMD.outputs[0].column == "cmmd" and CMMD.outputs[0].direction == "lower"


def test_cmmd_needs_reference_images(tmp_path):
    with pytest.raises(EvalrunError, match="cmmd needs a reference"):
        build_metric("cmmd", {"clip_model": CLIP}, MetricContext(reference={"kind": "none"}))
    np.savez(tmp_path / "s.npz", mu=np.zeros(3), sigma=np.eye(3))
    metric = build_metric("cmmd", {"clip_model": CLIP}, MetricContext(reference={"kind": "npz", "path": str(tmp_path / "s.npz")}))
    with pytest.raises(EvalrunError, match="holds only statistics; cmmd needs reference images"):
        metric.load()
