"""The ADM protocol end to end (tiny DiT, tiny random Inception, an ADM reference batch built here in
the evaluator's layout): FID, sFID, IS, precision and recall as the evaluator's formulas give them
on directly extracted features, the protocol and comparability columns, the sample batch the
evaluator reads, and the run's feature store: adding metrics to the finished run (or re-running it
into a new directory) extracts nothing twice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose, error_of, run_inprocess
from dist_helpers import direct_inception, frechet64

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_REF = 8


def _run_images(run_dir) -> torch.Tensor:
    from PIL import Image

    rows = pd.read_csv(run_dir / "images.csv")
    arrays = [np.asarray(Image.open(run_dir / p).convert("RGB")) for p in rows["path"]]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def adm(tmp_path_factory):
    """A reference batch as guided-diffusion ships them (np.savez: arr_0 images, statistics from the
    same Inception), then one protocol=adm run on 2 classes x 4 images with write_batch on."""
    from evalrun.metrics.functional.adm_batches import adm_statistics

    tmp = tmp_path_factory.mktemp("adm")
    gen = torch.Generator().manual_seed(5)
    ref_images = torch.randint(0, 256, (N_REF, 3, 32, 32), generator=gen, dtype=torch.uint8)
    pool, _, spatial = direct_inception(ref_images)
    stats = adm_statistics(pool, spatial)
    path = tmp / "ref_batch.npz"
    np.savez(path, ref_images.permute(0, 2, 3, 1).numpy(), mu=stats.mu, sigma=stats.sigma, mu_s=stats.mu_s,
             sigma_s=stats.sigma_s)
    run_dir = tmp / "run"
    record = run_inprocess("model=tiny_dit", "protocol=adm", f"reference.path={path}", "prompts.all=false",
                           "prompts.random=2", "num_images_per_prompt=4", "protocol.write_batch=true",
                           "metrics.fid.bootstrap=20", run_dir=run_dir)
    images = _run_images(run_dir)
    return {"path": path, "stats": stats, "ref_images": ref_images, "ref_pool": pool, "run_dir": run_dir,
            "record": record, "images": images, "direct": direct_inception(images), "tmp": tmp}


def test_protocol_runs_on_an_unconditional_model_with_num_images(adm, tmp_path):
    """protocol=adm sets a per-class count and the classes prompt set; an unconditional model ignores them
    (num_images samples): they are the protocol's, not settings of the user's to refuse. The departures
    name N only; a prompt setting the user adds is still refused."""
    run_dir = tmp_path / "ddpm"
    run_inprocess("model=tiny_ddpm", "protocol=adm", f"reference.path={adm['path']}", "num_images=4",
                  "metrics=[fid]", run_dir=run_dir)
    row = pd.read_csv(run_dir / "metrics.csv").iloc[0]
    pool, _, _ = direct_inception(_run_images(run_dir))
    assert row["fid"] == pytest.approx(frechet64(pool, (adm["stats"].mu, adm["stats"].sigma)), rel=1e-6)
    assert row["protocol"] == "adm" and "N=4, not 50000" in row["protocol_departures"]
    assert "per class" not in row["protocol_departures"] and "classes" not in row["protocol_departures"]
    assert "prompts.random=3 has no effect on model 'tiny_ddpm'" in error_of(
        "model=tiny_ddpm", "protocol=adm", f"reference.path={adm['path']}", "num_images=8", "prompts.all=false",
        "prompts.random=3", run_dir=tmp_path / "refused")


def test_protocol_run_writes_the_five_numbers_as_the_evaluator_computes_them(adm):
    from evalrun.metrics.functional.adm_precision_recall import adm_precision_recall

    row = pd.read_csv(adm["run_dir"] / "metrics.csv").iloc[0]
    pool, logits, spatial = adm["direct"]
    st = adm["stats"]
    assert row["fid"] == pytest.approx(frechet64(pool, (st.mu, st.sigma)), rel=1e-6)
    assert row["sfid"] == pytest.approx(frechet64(spatial, (st.mu_s, st.sigma_s)), rel=1e-6)
    # The evaluator's IS: softmax of pool3 @ W (no bias), splits of 5000 in sample order: one split here.
    p = torch.from_numpy(logits).double().softmax(1).numpy()
    kl = (p * (np.log(p) - np.log(p.mean(0, keepdims=True)))).sum(1).mean()
    assert row["is_mean"] == pytest.approx(float(np.exp(kl)), rel=1e-9)
    want = adm_precision_recall(adm["ref_pool"], pool, 3, "float16")
    assert (row["adm_precision"], row["adm_recall"]) == pytest.approx(want, abs=1e-12)
    assert row["protocol"] == "adm" and not row["comparable_to_published"]
    for why in ("N=8, not 50000", "4 images per class", "not all 1000 classes", "not a published ADM reference batch",
                "not the official file"):
        assert why in row["protocol_departures"], (why, row["protocol_departures"])
    assert row["inception_score.split_size"] == 5000 and row["adm.k"] == 3
    info = adm["record"]["provenance"]["metrics"]
    assert info["fid"]["reference_stats_source"].startswith("file (mu, sigma)")
    assert info["sfid"]["reference_stats_source"].startswith("file (mu_s, sigma_s)")
    assert info["adm"]["reference_images"] == N_REF and info["inception_score"]["is_splits"] == 1
    assert adm["record"]["columns"]["adm_precision_ci95_low"]["kind"] == "bound"
    # metrics.fid.bootstrap=20: an interval over generated images (the file's statistics stay fixed)
    assert row["fid_ci95_low"] <= row["fid_ci95_high"] and row["fid.bootstrap"] == 20 and row["fid.bootstrap_seed"] == 0
    assert info["fid"]["fid_bootstrap"]["reference_resampled"] is None and "fid.bootstrap_seed" in adm["record"]["seed_columns"]
    assert "sfid_ci95_low" not in row   # bootstrap off: the column is declared, never written


def test_sample_batch_is_the_run_in_the_evaluators_layout(adm):
    """The batch holds the run's images in the seeded order of the protocol's IS splits (the run samples class by
    class; in that order every 5000-image split holds 100 classes, which caps IS at 100), so the evaluator's IS
    on the written batch, consecutive splits of it, is the run's."""
    from evalrun.metrics.functional.adm_batches import npz_keys, read_images, read_labels
    from evalrun.metrics.functional.inception_score import inception_score_chunks, split_permutation

    path = adm["run_dir"] / "adm_batch.npz"
    order = np.random.RandomState(0).permutation(8)   # the run's seed, 0
    classes = pd.read_csv(adm["run_dir"] / "images.csv")["class_id"].to_numpy()
    assert set(npz_keys(path)) == {"arr_0", "arr_1"} and list(classes) == sorted(classes)   # sampled class by class
    np.testing.assert_array_equal(read_images(path), adm["images"].permute(0, 2, 3, 1).numpy()[order])
    np.testing.assert_array_equal(read_labels(path), classes[order])
    assert not list(adm["run_dir"].glob("*.tmp"))
    _, batch_logits, _ = direct_inception(torch.from_numpy(read_images(path)).permute(0, 3, 1, 2).contiguous())
    p = torch.from_numpy(batch_logits).double().softmax(1).numpy()
    evaluator = [np.exp((q * (np.log(q) - np.log(q.mean(0, keepdims=True)))).sum(1).mean()) for q in (p[:3], p[3:6], p[6:])]
    run_is = inception_score_chunks(adm["direct"][1], 3, split_permutation(8, 0))   # the metric's splits, 3 a split
    np.testing.assert_allclose(run_is, evaluator, rtol=1e-9)
    info = adm["record"]["provenance"]["metrics"]
    assert info["inception_score"]["is_shuffle"] is True and info["inception_score"]["is_seed"] == 0
    assert info["adm"]["adm_batch_seed"] == 0
    from evalrun.reference.__main__ import main   # the same batch from a finished run's folder, after the fact

    assert main(["adm-batch", str(adm["run_dir"]), str(adm["tmp"] / "after.npz")]) == 0
    np.testing.assert_array_equal(read_images(adm["tmp"] / "after.npz"), read_images(path))
    np.testing.assert_array_equal(read_labels(adm["tmp"] / "after.npz"), read_labels(path))
    assert main(["adm-batch", str(adm["run_dir"]), str(adm["tmp"] / "other.npz"), "--seed", "3"]) == 0
    np.testing.assert_array_equal(read_labels(adm["tmp"] / "other.npz"), classes[np.random.RandomState(3).permutation(8)])
    # metrics.inception_score.seed=7 orders both the IS splits and the batch (the run's seed ordered the batch)
    cfg = compose("model=tiny_dit", "protocol=adm", "metrics.inception_score.seed=7")
    assert cfg.metrics.adm.write_batch_seed == 7
    import json
    import shutil

    shutil.copytree(adm["run_dir"], adm["tmp"] / "seed7")
    record = json.loads((adm["tmp"] / "seed7" / "run.json").read_text())
    record["provenance"]["metrics"]["inception_score"]["is_seed"] = 7
    (adm["tmp"] / "seed7" / "run.json").write_text(json.dumps(record))
    assert main(["adm-batch", str(adm["tmp"] / "seed7")]) == 0  # after the fact: the IS seed the run recorded
    np.testing.assert_array_equal(read_labels(adm["tmp"] / "seed7" / "adm_batch.npz"),
                                  classes[np.random.RandomState(7).permutation(8)])
    # The written batch is itself a valid reference: its arr_0 gives the run's own FID statistics.
    from evalrun.metrics.features import build_extractor
    from evalrun.reference.cache import Reference
    from evalrun.reference.spec import ReferenceSpec

    ext = build_extractor("inception", path="evalrun/tiny-inception")
    ref = Reference(ReferenceSpec.from_config({"kind": "adm", "path": str(path)}, "t"), adm["tmp"] / "c")
    feats, info = ref.features(ext, "spatial", "t")
    np.testing.assert_allclose(feats, adm["direct"][2][order], rtol=1e-5, atol=1e-5)
    assert info["reference_images"] == 8 and info["reference_image_size"] == "32x32"


def test_protocol_is_splits_a_class_sorted_run_after_a_seeded_permutation():
    """20 classes x 10 images, class by class, a confident classifier, splits of 50: in run order each split
    holds 5 classes and IS is at most 5; the protocol's shuffle gives the score of a random class order."""
    from evalrun.metrics.functional.inception_score import inception_score_chunks, split_permutation

    assert compose("model=tiny_dit", "protocol=adm").metrics.inception_score.shuffle is True
    logits = np.full((200, 1008), -6.0)
    logits[np.arange(200), np.repeat(np.arange(20), 10)] = 6.0
    in_run_order = inception_score_chunks(logits, 50, None)
    shuffled = inception_score_chunks(logits, 50, split_permutation(200, 0))
    assert in_run_order.max() <= 5.0 and shuffled.mean() > 10.0


def test_reference_batch_statistics_round_trip_and_images_only_files(adm, tmp_path):
    """Statistics written by evalrun read back equal; a batch without statistics falls back to arr_0
    (as the evaluator computes them); one without arr_0 serves FID but not precision/recall."""
    from evalrun.errors import EvalrunError
    from evalrun.metrics.features import build_extractor
    from evalrun.metrics.functional.adm_batches import write_adm_batch
    from evalrun.reference.cache import Reference
    from evalrun.reference.spec import ReferenceSpec

    st, ext = adm["stats"], build_extractor("inception", path="evalrun/tiny-inception")
    imgs = adm["ref_images"].permute(0, 2, 3, 1).numpy()
    written = write_adm_batch(tmp_path / "w.npz", imgs, stats=st)
    images_only = write_adm_batch(tmp_path / "i.npz", imgs)
    np.savez(tmp_path / "s.npz", mu=st.mu, sigma=st.sigma, mu_s=st.mu_s, sigma_s=st.sigma_s)

    def reference(p):
        return Reference(ReferenceSpec.from_config({"kind": "adm", "path": str(p)}, "t"), tmp_path / "c")

    for layer, (mu, sigma) in (("2048", (st.mu, st.sigma)), ("spatial", (st.mu_s, st.sigma_s))):
        got, info = reference(written).stats(ext, layer, "t")
        assert np.array_equal(got.mu, mu) and np.array_equal(got.sigma, sigma) and info["reference_n"] is None
        from_images, info = reference(images_only).stats(ext, layer, "t")
        assert info["reference_stats_source"].startswith("arr_0")
        np.testing.assert_allclose(from_images.sigma, sigma, rtol=1e-4, atol=1e-6)
    assert reference(tmp_path / "s.npz").stats(ext, "2048", "t")[0].mu.shape == (2048,)
    with pytest.raises(EvalrunError, match="no arr_0"):
        reference(tmp_path / "s.npz").features(ext, "2048", "adm")
    (tmp_path / "notes.npz").write_text("not an array")  # numpy calls it pickled data and suggests allow_pickle
    with pytest.raises(EvalrunError, match=r"notes.npz: not an .npz file \(numpy's zip of arrays") as err:
        reference(tmp_path / "notes.npz").stats(ext, "2048", "t")
    assert "pickle" not in str(err.value)
    np.savez(tmp_path / "nchw.npz", adm["ref_images"].numpy())  # channels first: a file to fix, said in one line
    with pytest.raises(EvalrunError, match=r"^reference.path: .*nchw.npz: ADM batches hold uint8 NHWC RGB images .*"
                                           r"got dtype uint8 shape \(\d+, 3, 32, 32\); save arr_0 as") as err:
        reference(tmp_path / "nchw.npz").features(ext, "2048", "adm")
    assert "\n" not in str(err.value)
    np.savez(tmp_path / "objects.npz", arr_0=np.array([{"a": 1}], dtype=object))  # a pickle inside: a traceback
    with pytest.raises(EvalrunError, match=r"objects.npz: not an ADM reference batch \(object arrays need pickle"):
        reference(tmp_path / "objects.npz").stats(ext, "2048", "t")


def test_adding_metrics_to_a_finished_run_extracts_nothing_twice(adm, tmp_path, monkeypatch):
    """The finished run's configuration with more metrics, in a new run dir, then the finished run's
    images scored as a folder (model=images): no Inception pass at all (generated chunks from the
    feature store, reference features from the reference cache); a new backbone (DINOv2, and a
    TorchScript file) extracts once, and not again in the next run. (A finished run's own directory
    holds one configuration: a changed metric list goes to another directory.)"""
    from dist_helpers import TinyEncoder
    from evalrun.metrics.features.dinov2 import DINOv2
    from evalrun.metrics.features.inception import InceptionV3

    seen = {"inception": 0, "dinov2": 0}
    for cls, name in ((InceptionV3, "inception"), (DINOv2, "dinov2")):
        def counted(self, images, _orig=cls._extract, _name=name):
            seen[_name] += len(images)
            return _orig(self, images)
        monkeypatch.setattr(cls, "_extract", counted)
    ref = f"reference.path={adm['path']}"
    common = ("model=tiny_dit", "protocol=adm", ref, "prompts.all=false", "prompts.random=2", "num_images_per_prompt=4")
    more = ("metrics=[fid,sfid,inception_score,adm,kid,prdc,fid_inf]", "metrics.fid_inf.min_n=4",
            "metrics.fid_inf.num_points=3")
    record = run_inprocess(*common, *more, run_dir=tmp_path / "more")
    assert seen == {"inception": 0, "dinov2": 0} and record["provenance"]["features"]["extracted"] == 0
    folder = ("model=images", f"model.path={adm['run_dir'] / 'images'}", "reference=adm", ref, "metrics=[fid,sfid,prdc]",
              "metrics.fid.feature_extractor_weights_path=evalrun/tiny-inception",
              "metrics.sfid.feature_extractor_weights_path=evalrun/tiny-inception",
              "metrics.prdc.feature_extractor_path=evalrun/tiny-inception")
    record = run_inprocess(*folder, run_dir=tmp_path / "folder")
    assert seen == {"inception": 0, "dinov2": 0} and record["provenance"]["features"]["extracted"] == 0
    first = pd.read_csv(adm["run_dir"] / "metrics.csv").iloc[0]
    for other in ("more", "folder"):
        row = pd.read_csv(tmp_path / other / "metrics.csv").iloc[0]
        assert row["fid"] == first["fid"] and row["sfid"] == first["sfid"]
    row = pd.read_csv(tmp_path / "more" / "metrics.csv").iloc[0]
    assert np.isfinite(row["fid_inf"]) and 0 <= row["prdc_coverage"] <= 1

    torch.jit.script(TinyEncoder(8).eval()).save(str(tmp_path / "encoder.ts"))
    dino = ("metrics=[fid,fd_dinov2,fd]", "metrics.fd_dinov2.feature_extractor_path=evalrun/tiny-dinov2",
            "metrics.fd.feature_extractor=torchscript", f"metrics.fd.feature_extractor_path={tmp_path / 'encoder.ts'}")
    run_inprocess(*common, *dino, run_dir=tmp_path / "dino1")
    assert seen == {"inception": 0, "dinov2": 8 + N_REF}
    record = run_inprocess(*common, *dino, run_dir=tmp_path / "dino2")
    assert seen == {"inception": 0, "dinov2": 8 + N_REF} and record["provenance"]["features"]["extracted"] == 0
    dino_row = pd.read_csv(tmp_path / "dino2" / "metrics.csv").iloc[0]
    assert dino_row["fd.feature_extractor"] == "torchscript" and np.isfinite(dino_row["fd"]) and dino_row["fd_dinov2"] > 0
    assert len(str(dino_row["fd.weights_sha256"])) == 16   # the TorchScript file's sha256, short


def test_comparable_only_with_everything_as_published(adm, tmp_path):
    """The flag's true path: N=50,000 over 1000 classes, a published batch (by name, with statistics
    and arr_0), official weights, the evaluator's settings. One departure makes it false."""
    import shutil
    from types import SimpleNamespace

    from evalrun.config import build_metrics
    from evalrun.metrics.base import MetricResult
    from evalrun.metrics.protocol import protocol_columns
    from evalrun.tasks import get_task

    published = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    shutil.copy(adm["path"], published)
    cfg = compose("model=tiny_dit", "protocol=adm", f"reference.path={published}")
    metrics = build_metrics(cfg, get_task("class2img"))
    for m in metrics.values():
        m.extractor = SimpleNamespace(weights_identity=lambda: {"official": True})
    file_stats = {"reference_stats_source": "file (mu, sigma)", "reference_image_size": "32x32"}
    results = {"fid": MetricResult({}, info={**file_stats, "fid_generated_sizes": ["32x32"]}),
               "sfid": MetricResult({}, info={**file_stats, "sfid_generated_sizes": ["32x32"]}),
               "inception_score": MetricResult({}), "adm": MetricResult({}, info={"adm_generated_sizes": ["32x32"]})}
    cols = protocol_columns(cfg, metrics, results, 50000)
    assert cols == {"protocol": "adm", "comparable_to_published": True, "protocol_departures": ""}
    metrics["adm"].k = 5
    metrics["inception_score"].shuffle = False   # in run order, a class-sorted run caps IS at 100
    results["fid"].info["fid_generated_sizes"] = ["64x64"]
    cols = protocol_columns(cfg, metrics, results, 50000)
    assert not cols["comparable_to_published"] and "k=5" in cols["protocol_departures"] \
        and "64x64" in cols["protocol_departures"] and "randomly ordered batch" in cols["protocol_departures"]
    none = protocol_columns(compose("model=tiny_dit"), {}, {}, 12)
    assert none["protocol"] == "none" and none["comparable_to_published"] is False


def test_a_feature_layer_other_than_pool3_is_a_departure(adm, tmp_path):
    """The evaluator's precision/recall (and FID) use pool3: another layer is recorded and named as a departure."""
    common = ("model=tiny_dit", "protocol=adm", f"reference.path={adm['path']}", "prompts.all=false", "prompts.random=2",
              "num_images_per_prompt=4", "metrics=[adm]")
    run_inprocess(*common, "metrics.adm.feature_layer=spatial", run_dir=tmp_path / "spatial")
    row = pd.read_csv(tmp_path / "spatial" / "metrics.csv").iloc[0]
    assert row["adm.feature_layer"] == "spatial" and "adm: feature layer spatial, not pool3 (2048)" in row["protocol_departures"]
    assert "feature layer" not in pd.read_csv(adm["run_dir"] / "metrics.csv").iloc[0]["protocol_departures"]
