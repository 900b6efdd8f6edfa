"""Reference sources, preprocessing, the content-keyed feature cache, .npz round trips and
the config files. A cheap pooled-pixel "extractor" stands in for Inception where the
network is beside the point."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import inception_weights as iw  # noqa: E402
from evalrun.errors import ConfigError, EvalrunError  # noqa: E402
from evalrun.metrics.functional.fid import GaussianStats, frechet_distance  # noqa: E402
from evalrun.metrics.features.base import FeatureExtractor  # noqa: E402
from evalrun.paths import CONF_DIR as CONF  # noqa: E402
from evalrun.reference.cache import Reference  # noqa: E402
from evalrun.reference.images import iter_images as _iter_images  # noqa: E402
from evalrun.reference.npz import load_npz, save_npz  # noqa: E402
from evalrun.reference.spec import ReferenceSpec  # noqa: E402


class CountingPool(FeatureExtractor):
    """4x4 average-pooled pixels (48 features), counting the images it sees: a cheap stand-in backbone
    behind the same protocol as Inception (its ``weights`` string plays the weights' hash)."""

    name = "test-pool4"

    def __init__(self, weights: str = "w0", batch_size: int = 50) -> None:
        super().__init__("cpu", batch_size)
        self.seen, self.weights = 0, weights

    @property
    def layers(self):
        return {"pixels": 48}

    def preprocessing(self):
        return {"pool": "4x4 average of [0, 1] pixels"}

    def weights_identity(self):
        return {"sha256": self.weights}

    def _extract(self, images):
        self.seen += len(images)
        return {"pixels": torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)}


def iter_images(spec):
    return _iter_images(spec, [])


def reference_features(spec, pool, cache):
    return Reference(spec, cache).features(pool, "pixels", "test")


def reference_stats(spec, pool, cache):
    return Reference(spec, cache).stats(pool, "pixels", "test")


@pytest.fixture
def photos(tmp_path) -> Path:
    """A private copy of the photos (mixed sizes, PNG and JPEG, some grayscale)."""
    if not iw.PHOTOS.is_dir() or not any(iw.PHOTOS.iterdir()):
        pytest.skip(f"no photos in {iw.PHOTOS}")
    return Path(shutil.copytree(iw.PHOTOS, tmp_path / "photos"))


def spec(path, **kw) -> ReferenceSpec:
    return ReferenceSpec.from_config({"kind": "folder", "path": str(path), **kw}, "test")


def test_folder_images_become_rgb_uint8_with_crop_and_resize(photos):
    modes = {Image.open(p).mode for p in photos.iterdir()}
    assert "L" in modes or "P" in modes or "LA" in modes, modes  # the folder does exercise conversion
    images = list(iter_images(spec(photos)))
    assert len(images) == len(list(photos.iterdir())) and all(i.dtype == torch.uint8 and i.shape[0] == 3 for i in images)
    assert len({tuple(i.shape) for i in images}) > 1  # sizes are kept without resize
    squared = list(iter_images(spec(photos, center_crop=True, resize=32)))
    assert {tuple(i.shape) for i in squared} == {(3, 32, 32)}
    first = sorted(photos.iterdir())[0]
    with Image.open(first) as img:
        rgb = img.convert("RGB")
        w, h = rgb.size
        s = min(w, h)
        expected = rgb.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((32, 32), Image.BICUBIC)
    assert torch.equal(squared[0], torch.from_numpy(np.asarray(expected).copy()).permute(2, 0, 1))


def test_center_crop_size_and_rectangular_resize(photos):
    first = next(iter_images(spec(photos)))
    cropped = next(iter_images(spec(photos, center_crop=20)))
    h, w = first.shape[1:]
    assert torch.equal(cropped, first[:, (h - 20) // 2:(h - 20) // 2 + 20, (w - 20) // 2:(w - 20) // 2 + 20])
    assert next(iter_images(spec(photos, resize=[24, 40]))).shape == (3, 24, 40)
    with pytest.raises(EvalrunError, match="larger than"):
        next(iter_images(spec(photos, center_crop=100000)))


def test_features_are_computed_once_and_found_by_content(photos, tmp_path):
    cache, pool = tmp_path / "cache", CountingPool(batch_size=4)
    feats, info = reference_features(spec(photos), pool, cache)
    n = len(feats)
    assert info["reference_cache"] == "computed" and pool.seen == n == info["reference_n"]
    again, info2 = reference_features(spec(photos), pool, cache)  # a second sweep
    assert info2["reference_cache"] == "hit" and pool.seen == n and np.array_equal(again, feats)
    copy = Path(shutil.copytree(photos, tmp_path / "elsewhere"))  # same content, other path: same entry
    assert reference_features(spec(copy), pool, cache)[1]["reference_cache_key"] == info["reference_cache_key"]
    assert pool.seen == n
    # Each thing that changes the features changes the key.
    victim = sorted(copy.iterdir())[0]
    Image.open(victim).convert("RGB").rotate(90).save(victim.with_suffix(".png"))
    if victim.suffix != ".png":
        victim.unlink()
    keys = {info["reference_cache_key"],
            reference_features(spec(copy), pool, cache)[1]["reference_cache_key"],
            reference_features(spec(photos, resize=32), pool, cache)[1]["reference_cache_key"],
            reference_features(spec(photos, limit=5), pool, cache)[1]["reference_cache_key"],
            reference_features(spec(photos, limit=5, shuffle_seed=0), pool, cache)[1]["reference_cache_key"],
            reference_features(spec(photos), CountingPool("other"), cache)[1]["reference_cache_key"]}
    assert len(keys) == 6


@pytest.mark.parametrize("damage", ["features_cut", "features_empty", "stats_cut", "stats_bit_flip"])
def test_a_damaged_reference_cache_entry_is_computed_again(photos, tmp_path, damage, caplog):
    """A cache file cut short (a full disk, an interrupted copy) or altered is found and recomputed, with a
    warning; it never stops the run nor gives other numbers."""
    cache, pool = tmp_path / "cache", CountingPool(batch_size=4)
    stats, info = reference_stats(spec(photos), pool, cache)
    entry = cache / "reference" / info["reference_cache_key"]
    target = entry / ("features_pixels.npy" if damage.startswith("features") else "stats_pixels.npz")
    data = target.read_bytes()
    if damage == "stats_bit_flip":  # inside the zip's compressed data: its CRC check fails on reading
        data = data[:200] + bytes([data[200] ^ 0xFF]) + data[201:]
    else:
        data = b"" if damage == "features_empty" else data[: len(data) // 2]
    target.write_bytes(data)
    seen = pool.seen
    again, info2 = reference_stats(spec(photos), pool, cache)
    assert np.array_equal(again.mu, stats.mu) and np.array_equal(again.sigma, stats.sigma)
    assert info2["reference_cache_key"] == info["reference_cache_key"]
    assert (pool.seen > seen) == damage.startswith("features")  # statistics are remade from the cached features
    assert "damaged" in caplog.text or "computing the statistics again" in caplog.text
    assert reference_features(spec(photos), pool, cache)[1]["reference_cache"] == "hit"


@pytest.mark.parametrize("damage", ["cut", "bit_flip", "empty"])
def test_a_damaged_feature_cache_file_is_extracted_again(tmp_path, damage, caplog):
    """The generated images' feature cache: a cut or altered file (numpy's zip checks fail with BadZipFile,
    which is not an OSError) is recomputed with a warning, never a traceback."""
    from types import SimpleNamespace

    from evalrun.metrics.features.store import FeatureStore

    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = SimpleNamespace(key="ab" * 32, hashes=[f"h{i}" for i in range(6)], images=images, start=0)
    pool = CountingPool()
    first = FeatureStore(tmp_path)._cached(pool, batch)
    (path,) = list(tmp_path.rglob("*.npz"))
    data = path.read_bytes()
    path.write_bytes({"cut": data[: len(data) // 2], "empty": b"",
                      "bit_flip": data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]}[damage])
    store = FeatureStore(tmp_path)
    again = store._cached(pool, batch)
    assert np.array_equal(again["pixels"], first["pixels"]) and store.extracted == 6 and pool.seen == 12
    assert "unreadable; recomputing" in caplog.text
    assert FeatureStore(tmp_path)._cached(pool, batch) is not None and pool.seen == 12  # rewritten whole


def test_limit_takes_first_or_seeded_images(photos, tmp_path):
    pool = CountingPool()
    full, _ = reference_features(spec(photos), pool, tmp_path)
    first, _ = reference_features(spec(photos, limit=5), pool, tmp_path)
    drawn, info = reference_features(spec(photos, limit=5, shuffle_seed=1), pool, tmp_path)
    assert np.array_equal(first, full[:5]) and info["reference_n"] == 5
    assert np.array_equal(drawn, full[np.sort(np.random.RandomState(1).permutation(len(full))[:5])])


def test_dataset_source_gives_the_folder_features(photos, tmp_path):
    pytest.importorskip("datasets")
    folder, _ = reference_features(spec(photos, resize=32), CountingPool(), tmp_path / "c1")
    ds_spec = ReferenceSpec.from_config({"kind": "dataset", "path": str(photos), "split": "train", "resize": 32}, "test")
    try:
        feats, info = reference_features(ds_spec, CountingPool(), tmp_path / "c2")
    except EvalrunError as exc:
        pytest.skip(f"datasets cannot read the folder here: {exc}")
    assert info["reference"].startswith("dataset:") and len(feats) == len(folder)
    # Same images; row order is the dataset's, so compare order-free statistics.
    a, b = GaussianStats.from_features(folder), GaussianStats.from_features(feats)
    assert np.allclose(a.mu, b.mu, atol=1e-12) and np.allclose(a.sigma, b.sigma, atol=1e-12)
    assert reference_features(ds_spec, CountingPool(), tmp_path / "c2")[1]["reference_cache"] == "hit"
    # A wrong split is named as such (the fix offered was HF_HUB_OFFLINE=1, already set, or a local path, given).
    wrong = ReferenceSpec.from_config({"kind": "dataset", "path": str(photos), "split": "nope"}, "test")
    with pytest.raises(EvalrunError, match=r"split 'nope' .*set reference.split= to one of the dataset's splits"):
        reference_features(wrong, CountingPool(), tmp_path / "c3")


def test_a_local_dataset_image_replaced_with_its_mtime_kept_is_a_new_key(photos, tmp_path):
    """A local dataset's own fingerprint follows its files' paths and mtimes: an image replaced with its mtime
    restored (cp -p, rsync -a) kept the key, and the old features were served for the new pixels."""
    import os
    import shutil

    from PIL import Image

    pytest.importorskip("datasets")
    local = tmp_path / "ds"
    shutil.copytree(photos, local / "train")
    ds_spec = ReferenceSpec.from_config({"kind": "dataset", "path": str(local), "split": "train", "resize": 16}, "test")
    try:
        before, info = reference_features(ds_spec, CountingPool(), tmp_path / "cache")
    except EvalrunError as exc:
        pytest.skip(f"datasets cannot read the folder here: {exc}")
    target = sorted((local / "train").glob("*.png"))[0]
    stamp = target.stat()
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(target)
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    after, again = reference_features(ds_spec, CountingPool(), tmp_path / "cache")
    assert again["reference_cache"] == "computed" and again["reference_cache_key"] != info["reference_cache_key"]
    assert not np.array_equal(np.sort(after, axis=0), np.sort(before, axis=0))
    assert reference_features(ds_spec, CountingPool(), tmp_path / "cache")[1]["reference_cache"] == "hit"


def test_stats_and_npz_round_trip(photos, tmp_path):
    stats, info = reference_stats(spec(photos, resize=16), CountingPool(), tmp_path)
    save_npz(tmp_path / "s.npz", stats, {"note": "x"})
    back, meta = load_npz(tmp_path / "s.npz")
    assert meta == {"note": "x"} and back.n == stats.n
    assert np.array_equal(back.mu, stats.mu) and np.array_equal(back.sigma, stats.sigma)
    other = GaussianStats.from_features(np.random.default_rng(0).random((30, 48)))
    assert frechet_distance(other, back) == frechet_distance(other, stats)
    np.savez(tmp_path / "foreign.npz", mu=stats.mu, sigma=stats.sigma)  # pytorch-fid's layout
    foreign, meta = load_npz(tmp_path / "foreign.npz")
    assert foreign.n is None and meta == {}
    # Without the low-rank factor the trace goes through sigma, whose zero eigenvalues
    # (12 images, 48 features) carry round-off: equal to ~1e-9 here, not to the last bit.
    assert frechet_distance(other, foreign) == pytest.approx(frechet_distance(other, stats), rel=1e-6)
    np.savez(tmp_path / "bad.npz", mu=stats.mu)
    with pytest.raises(EvalrunError, match="mu.*sigma"):
        load_npz(tmp_path / "bad.npz")


def test_cli_lists_and_exports_a_cached_entry(tmp_path, capsys):
    from evalrun.metrics.features import build_extractor
    from evalrun.reference.__main__ import main

    folder = iw.save_pngs(iw.random_images(4, 32, seed=2), tmp_path / "ref")
    extractor = build_extractor("inception", path=str(iw.weights_path()), batch_size=4, weights_sha256="any")
    feats, info = Reference(spec(folder), tmp_path / "c").features(extractor, "2048", "test")
    assert main(["--cache-dir", str(tmp_path / "c"), "list"]) == 0
    assert info["reference_cache_key"] in capsys.readouterr().out
    assert main(["list", "--cache-dir", str(tmp_path / "c")]) == 0  # after the command too
    assert info["reference_cache_key"] in capsys.readouterr().out
    out = tmp_path / "x.npz"
    assert main(["--cache-dir", str(tmp_path / "c"), "export", "--key", info["reference_cache_key"], str(out)]) == 0
    stats, meta = load_npz(out)
    assert np.allclose(stats.mu, feats.astype(np.float64).mean(0))
    assert meta["extractor"]["weights"]["sha256"] == iw.sha256(iw.weights_path())
    assert main(["--cache-dir", str(tmp_path / "c"), "export", "--key", "nope", str(out)]) == 2


def test_list_names_a_model_folders_weights_by_its_weights_file(tmp_path, capsys):
    """A CLIP or DINOv2 entry records a sha256 per file of its folder: the listing shows the weights file's,
    so two entries made with different networks read apart (they read "weights=files" alike)."""
    from evalrun.reference.__main__ import main

    for name, weights in (("a" * 32, "1" * 64), ("b" * 32, "2" * 64)):
        (tmp_path / "c" / "reference" / name).mkdir(parents=True)
        meta = {"n": 3, "reference": "folder:/x", "extractor": {"extractor": "clip", "layers": {"embedding": 1},
                "weights": {"files": {"config.json": "9" * 64, "model.safetensors": weights}}}}
        (tmp_path / "c" / "reference" / name / "meta.json").write_text(json.dumps(meta))
    assert main(["--cache-dir", str(tmp_path / "c"), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("weights=")[1].split()[0] for line in lines] == ["1" * 12, "2" * 12]


def test_spec_accepts_hydra_dictconfig(photos):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"kind": "folder", "path": str(photos), "center_crop": True, "resize": [24, 32],
                            "limit": None, "shuffle_seed": None})
    parsed = ReferenceSpec.from_config(cfg, "fid")
    assert parsed.resize == (24, 32) and next(iter_images(parsed)).shape == (3, 24, 32)


def test_spec_errors_name_the_fix(tmp_path):
    for cfg in (None, {"kind": "none"}):
        with pytest.raises(EvalrunError, match="fid needs a reference: set reference=folder reference.path="):
            ReferenceSpec.from_config(cfg, "fid")
    with pytest.raises(ConfigError, match="no key.*colour.*valid"):
        ReferenceSpec.from_config({"kind": "folder", "path": "x", "colour": 1}, "fid")
    with pytest.raises(ConfigError, match="reference.kind='zip'"):
        ReferenceSpec.from_config({"kind": "zip", "path": "x"}, "fid")
    with pytest.raises(ConfigError, match="reference.path is not set"):
        ReferenceSpec.from_config({"kind": "folder", "path": None}, "fid")
    with pytest.raises(ConfigError, match="not a directory"):
        spec(tmp_path / "missing")  # before any model loads or image is generated
    with pytest.raises(ConfigError, match="no such .npz"):
        ReferenceSpec.from_config({"kind": "npz", "path": str(tmp_path / "missing.npz")}, "fid")
    with pytest.raises(EvalrunError, match="has no images"):
        reference_features(spec(tmp_path), CountingPool(), tmp_path / "c")


def test_config_files_match_the_code():
    from omegaconf import OmegaConf

    from evalrun.metrics.registry import metric_class

    for kind in ("none", "folder", "dataset", "npz"):
        cfg = OmegaConf.load(CONF / "reference" / f"{kind}.yaml")
        assert cfg.kind == kind and set(cfg) <= set(ReferenceSpec.__dataclass_fields__)
    for name in ("fid", "kid", "inception_score", "cmmd"):
        cfg = OmegaConf.load(CONF / "metrics" / f"{name}.yaml")
        assert list(cfg) == [name]
        params = set(inspect.signature(metric_class(name).__init__).parameters) - {"self", "context"}
        assert set(cfg[name]) == params, (name, set(cfg[name]) ^ params)
        headline = metric_class(name).outputs[0]
        assert headline.direction == ("higher" if name == "inception_score" else "lower")


def test_reference_files_are_hashed_in_chunks(tmp_path):
    """A local dataset's files are hashed for its key; a shard of gigabytes was read whole into memory."""
    import hashlib
    import tracemalloc

    from evalrun.reference.cache import _file_sha256

    big = tmp_path / "shard.parquet"
    big.write_bytes(np.random.RandomState(0).bytes(24 << 20))
    tracemalloc.start()
    try:
        digest = _file_sha256(big, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(big.read_bytes()).hexdigest()
    assert peak < 4 << 20, peak


def test_statistics_with_object_arrays_say_why_they_are_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", mu=np.array([{"x": 1}], dtype=object), sigma=np.eye(2))
    with pytest.raises(EvalrunError, match=r"obj.npz: not an .npz with 'mu' and 'sigma' \(.*allow_pickle.*\); object "
                                           r"arrays are pickles, which evalrun never loads: save mu and sigma as float"):
        load_npz(tmp_path / "obj.npz")
