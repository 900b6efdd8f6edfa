"""FID, KID and IS against torch-fidelity and torchmetrics, offline, with one random-weights
Inception file that all three load. The real photos (resized to 64x64) are the reference;
seeded random images are the "generated" set. N is tiny (Inception on CPU is ~0.1 s an
image, and each library runs its own): agreement, not statistical quality, is tested."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import inception_weights as iw  # noqa: E402
from evalrun.errors import ConfigError, EvalrunError  # noqa: E402
from evalrun.metrics import ImageBatch, MetricContext, build_metric  # noqa: E402
from evalrun.metrics.functional.inception_score import inception_score_splits  # noqa: E402
from evalrun.metrics.functional.kid import kid_subsets  # noqa: E402
from evalrun.metrics.features import build_extractor  # noqa: E402
from evalrun.metrics.features.inception import FILENAME, InceptionV3  # noqa: E402

N = BATCH = 12      # one batch per set: every implementation sees the same batches
KID_SUBSETS, KID_SIZE = 10, 8
IS_SPLITS = 3       # 12 / 3: torch.chunk and torch-fidelity's rule make the same splits
SEED = 3            # KID subsets and IS permutation (torch-fidelity's rng_seed)
TOL = 1e-4          # relative, from the brief


def _weights() -> dict:
    """The random test weights are not the official file: say so, as a user with other weights must."""
    return {"feature_extractor_weights_path": str(iw.weights_path()), "feature_extractor_weights_sha256": "any"}




def _batches(images: torch.Tensor):
    for start in range(0, len(images), BATCH):
        chunk = images[start:start + BATCH]
        yield ImageBatch(chunk, [{"prompt": "x"} for _ in chunk])


def _run(name: str, images: torch.Tensor, context: MetricContext, **settings):
    metric = build_metric(name, {**_weights(), "batch_size": BATCH, **settings}, context)
    for batch in _batches(images):
        metric.update(batch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = metric.compute()
    return result, [str(w.message) for w in caught]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    real = iw.load_photos(64)[:N]
    fake = iw.random_images(N, 64, seed=0)
    tmp = tmp_path_factory.mktemp("fidkid")
    ref_dir = iw.save_pngs(real, tmp / "reference")
    context = MetricContext(cache_dir=tmp / "cache", reference={"kind": "folder", "path": str(ref_dir)}, seed=0)
    out = {"real": real, "fake": fake, "ref_dir": ref_dir, "context": context, "tmp": tmp}
    out["fid"] = _run("fid", fake, context)
    out["kid"] = _run("kid", fake, context, subsets=KID_SUBSETS, subset_size=KID_SIZE, seed=SEED)
    out["is"] = _run("inception_score", fake, context, splits=IS_SPLITS, seed=SEED)
    extractor = build_extractor("inception", path=str(iw.weights_path()), batch_size=BATCH, weights_sha256="any")
    out["features"] = {name: extractor.extract(images) for name, images in (("real", real), ("fake", fake))}
    return out


@pytest.fixture(scope="module")
def fidelity(setup):
    import torch_fidelity

    return torch_fidelity.calculate_metrics(
        input1=iw.UInt8Dataset(setup["fake"]), input2=iw.UInt8Dataset(setup["real"]), fid=True, kid=True, isc=True,
        feature_extractor_weights_path=str(iw.weights_path()), batch_size=BATCH, cuda=False, cache=False,
        save_cpu_ram=True, verbose=False, kid_subsets=KID_SUBSETS, kid_subset_size=KID_SIZE, rng_seed=SEED,
        isc_splits=IS_SPLITS)


def _tm_inception(layer: str):
    from torchmetrics.image.fid import NoTrainInceptionV3

    return NoTrainInceptionV3("inception-v3-compat", [layer], feature_extractor_weights_path=str(iw.weights_path()),
                              antialias=False)


def test_weights_file_is_the_format_both_libraries_load():
    state = torch.load(iw.weights_path())
    assert len(state) == 566
    assert state["fc.weight"].shape == (1008, 2048)
    assert sum(k.endswith("num_batches_tracked") for k in state) == sum(k.endswith("running_var") for k in state) > 90
    _tm_inception("2048")  # strict load_state_dict inside; raises on any missing/extra key


def test_fid_matches_torch_fidelity_and_torchmetrics(setup, fidelity):
    from torchmetrics.image.fid import FrechetInceptionDistance

    tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(iw.weights_path()), antialias=False)
    tm.update(setup["real"], real=True)
    tm.update(setup["fake"], real=False)
    ours = setup["fid"][0].values["fid"]
    theirs_tf, theirs_tm = fidelity["frechet_inception_distance"], float(tm.compute())
    print(f"\nFID evalrun {ours:.9g} torch-fidelity {theirs_tf:.9g} (rel {iw.rel(ours, theirs_tf):.1e}) "
          f"torchmetrics {theirs_tm:.9g} (rel {iw.rel(ours, theirs_tm):.1e})")
    assert ours > 1.0  # the sets differ; a degenerate network would give ~0 everywhere
    assert iw.rel(ours, theirs_tf) < TOL and iw.rel(ours, theirs_tm) < TOL


def test_fid_records_settings_and_warns_below_2048(setup):
    result, caught = setup["fid"]
    info = result.info
    assert info["fid_n_generated"] == N and info["reference_n"] == N
    assert info["fid_trace_sqrt"].startswith("low-rank")
    assert info["feature_extractor_weights"]["sha256"] == iw.sha256(iw.weights_path())
    assert info["feature_extractor_weights"]["official"] is False and info["feature_batch_size"] == BATCH
    assert "no antialias" in info["feature_preprocessing"]["resize"] and info["reference_cache"] == "computed"
    assert any("2048" in m for m in caught) and "fid_warning" in info


def test_kid_matches_torch_fidelity_with_the_same_seed(setup, fidelity):
    values = setup["kid"][0].values
    mean_tf, std_tf = fidelity["kernel_inception_distance_mean"], fidelity["kernel_inception_distance_std"]
    print(f"\nKID evalrun {values['kid_mean']:.9g}±{values['kid_std']:.6g} torch-fidelity {mean_tf:.9g}±{std_tf:.6g} "
          f"(rel {iw.rel(values['kid_mean'], mean_tf):.1e}, {iw.rel(values['kid_std'], std_tf):.1e})")
    assert values["kid_mean"] > 0
    assert iw.rel(values["kid_mean"], mean_tf) < TOL and iw.rel(values["kid_std"], std_tf) < TOL


def test_kid_matches_torchmetrics_on_the_same_subsets(setup):
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = KernelInceptionDistance(feature=_tm_inception("2048"), subsets=KID_SUBSETS, subset_size=KID_SIZE)
    tm.update(setup["real"], real=True)
    tm.update(setup["fake"], real=False)
    torch.manual_seed(11)
    tm_mean, tm_std = (float(v) for v in tm.compute())
    torch.manual_seed(11)  # replay torchmetrics' draws: real perm, then fake perm, per subset
    draws = [(torch.randperm(N)[:KID_SIZE].numpy(), torch.randperm(N)[:KID_SIZE].numpy()) for _ in range(KID_SUBSETS)]
    real, fake = (setup["features"][name]["2048"] for name in ("real", "fake"))
    values = kid_subsets(fake, real, [(f, r) for r, f in draws])
    print(f"\nKID same subsets: evalrun {values.mean():.9g}±{values.std():.6g} torchmetrics {tm_mean:.9g}±{tm_std:.6g} "
          f"(rel {iw.rel(values.mean(), tm_mean):.1e}, {iw.rel(values.std(), tm_std):.1e})")
    assert iw.rel(values.mean(), tm_mean) < TOL and iw.rel(values.std(), tm_std) < TOL


def test_is_matches_torch_fidelity_with_the_same_seed(setup, fidelity):
    values = setup["is"][0].values
    mean_tf, std_tf = fidelity["inception_score_mean"], fidelity["inception_score_std"]
    print(f"\nIS evalrun {values['is_mean']:.9g}±{values['is_std']:.6g} torch-fidelity {mean_tf:.9g}±{std_tf:.6g} "
          f"(rel {iw.rel(values['is_mean'], mean_tf):.1e}, {iw.rel(values['is_std'], std_tf):.1e})")
    assert values["is_mean"] > 1.01  # logits spread: the score is not trivially 1
    assert iw.rel(values["is_mean"], mean_tf) < TOL and iw.rel(values["is_std"], std_tf) < TOL


def test_is_matches_torchmetrics_with_the_same_permutation(setup):
    from torchmetrics.image.inception import InceptionScore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = InceptionScore(feature=_tm_inception("logits_unbiased"), splits=IS_SPLITS)
    tm.update(setup["fake"])
    torch.manual_seed(13)
    tm_mean, tm_std = (float(v) for v in tm.compute())
    torch.manual_seed(13)
    perm = torch.randperm(N).numpy()
    scores = inception_score_splits(setup["features"]["fake"]["logits_unbiased"], IS_SPLITS, perm)
    ours_std = scores.std(ddof=1)  # torchmetrics' ddof
    print(f"\nIS same permutation: evalrun {scores.mean():.9g}±{ours_std:.6g} torchmetrics {tm_mean:.9g}±{tm_std:.6g} "
          f"(rel {iw.rel(scores.mean(), tm_mean):.1e}, {iw.rel(ours_std, tm_std):.1e})")
    assert iw.rel(scores.mean(), tm_mean) < TOL and iw.rel(ours_std, tm_std) < TOL


def test_is_of_confident_logits_is_finite_and_exact():
    """Logits confident enough that every other class's probability underflows to 0 (random-weight
    networks give them): 0 * log 0 is 0, not NaN. Six one-hot images over three classes score exactly 3
    (each KL is log 3); the split-size rule gives the same; the naive form did give NaN here."""
    from evalrun.metrics.functional.inception_score import inception_score_chunks

    logits = np.full((6, 1008), -1000.0)
    logits[np.arange(6), [0, 1, 2, 0, 1, 2]] = 1000.0
    assert inception_score_splits(logits, 1).tolist() == pytest.approx([3.0], rel=1e-12)
    assert inception_score_chunks(logits, 6).tolist() == pytest.approx([3.0], rel=1e-12)
    assert inception_score_splits(logits, 2).tolist() == pytest.approx([3.0, 3.0], rel=1e-12)
    p = torch.as_tensor(logits).softmax(dim=1)
    naive = (p * (torch.as_tensor(logits).log_softmax(dim=1) - p.mean(dim=0, keepdim=True).log())).sum(dim=1)
    assert torch.isnan(naive).all()


def test_is_does_not_use_the_global_rng(setup):
    context = MetricContext(seed=0)
    torch.manual_seed(1), np.random.seed(1)
    again = _run("inception_score", setup["fake"], context, splits=IS_SPLITS, seed=SEED)[0].values
    assert again == setup["is"][0].values
    other = _run("inception_score", setup["fake"], context, splits=IS_SPLITS, seed=SEED + 1)[0].values
    assert other != again  # the seed does pick the permutation


def test_fid_of_a_set_against_itself_is_zero(setup):
    result, _ = _run("fid", setup["real"], setup["context"])
    print(f"\nFID(reference, reference) = {result.values['fid']:.3e} (FID vs random images {setup['fid'][0].values['fid']:.4g})")
    assert abs(result.values["fid"]) < 1e-9 * setup["fid"][0].values["fid"]
    assert result.info["reference_cache"] == "hit"


def test_fid_from_cached_statistics_equals_fid_from_images(setup, monkeypatch):
    import evalrun.reference.images as reference_images

    def no_images(*_a, **_k):
        raise AssertionError("reference images were read again")

    monkeypatch.setattr(reference_images, "iter_images", no_images)
    result, _ = _run("fid", setup["fake"], setup["context"])
    assert result.info["reference_cache"] == "hit"
    assert result.values["fid"] == pytest.approx(setup["fid"][0].values["fid"], rel=1e-12)


def test_exported_npz_gives_the_same_fid(setup):
    from evalrun.reference.__main__ import main

    out = setup["tmp"] / "ref_stats.npz"
    assert main(["--cache-dir", str(setup["context"].cache_dir), "export", "--path", str(setup["ref_dir"]),
                 "--weights", str(iw.weights_path()), "--weights-sha256", "any", "--batch-size", str(BATCH), str(out)]) == 0
    with np.load(out) as f:
        assert {"mu", "sigma"} <= set(f.files) and f["sigma"].shape == (2048, 2048)
    context = MetricContext(cache_dir=setup["context"].cache_dir, reference={"kind": "npz", "path": str(out)})
    result, _ = _run("fid", setup["fake"], context)
    assert result.values["fid"] == pytest.approx(setup["fid"][0].values["fid"], rel=1e-12)
    assert result.info["reference_extractor_matches"] is True and result.info["reference_n"] == N


def test_fid_does_not_depend_on_how_images_arrive(setup):
    metric = build_metric("fid", {**_weights(), "batch_size": BATCH}, setup["context"])
    for start in range(0, N, 5):  # uneven update batches of 5, 5, 2
        chunk = setup["fake"][start:start + 5]
        metric.update(ImageBatch(chunk, [{"prompt": "x"} for _ in chunk]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = metric.compute().values["fid"]
    print(f"\nFID in batches of 12: {setup['fid'][0].values['fid']:.9g}, of 5/5/2: {value:.9g}")
    assert value == pytest.approx(setup["fid"][0].values["fid"], rel=1e-5)  # float32 convolution round-off only


def test_fid_kid_is_share_one_inception_pass(setup, monkeypatch):
    calls = []
    original = InceptionV3._extract
    monkeypatch.setattr(InceptionV3, "_extract", lambda self, images: calls.append(len(images)) or original(self, images))
    images = iw.random_images(3, 32, seed=9)
    context = MetricContext(cache_dir=setup["context"].cache_dir, reference=setup["context"].reference, seed=0)  # one run
    for name in ("fid", "kid", "inception_score"):
        metric = build_metric(name, {**_weights()}, context)
        metric.update(ImageBatch(images, [{"prompt": "x"}] * 3))
    assert calls == [3]


def test_kid_clamps_subset_size_and_records_it(setup):
    result, caught = _run("kid", setup["fake"], setup["context"], subsets=3, subset_size=1000, seed=0)
    assert result.info["kid_subset_size"] == N and result.info["kid_subset_size_requested"] == 1000
    assert any("clamped" in m for m in caught)


def test_distribution_metrics_need_a_reference():
    for reference in (None, {"kind": "none"}):
        with pytest.raises(EvalrunError, match="reference=folder reference.path="):
            build_metric("fid", {**_weights()}, MetricContext(reference=reference))


def test_kid_refuses_npz_reference(tmp_path):
    from evalrun.metrics.functional.fid import GaussianStats
    from evalrun.reference.npz import save_npz

    save_npz(tmp_path / "s.npz", GaussianStats(np.zeros(2048), np.eye(2048), 10))
    metric = build_metric("kid", {**_weights()}, MetricContext(reference={"kind": "npz", "path": str(tmp_path / "s.npz")}))
    with pytest.raises(EvalrunError, match="holds only statistics; kid needs reference images"):
        metric.load()


def test_missing_or_undownloadable_weights_say_what_to_do(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "real.png")  # a reference folder with an image
    with pytest.raises(ConfigError, match="metrics.kid.feature_extractor_weights_path=.*no such file"):
        build_metric("kid", {"feature_extractor_weights_path": str(tmp_path / "nope.pth")},
                     MetricContext(reference={"kind": "folder", "path": str(tmp_path)})).load()

    def offline(*_a, **_k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(EvalrunError) as err:
        build_metric("inception_score", {}, MetricContext()).load()
    message = str(err.value)
    assert "\n" not in message and FILENAME in message
    assert "metrics.inception_score.feature_extractor_weights_path=" in message
