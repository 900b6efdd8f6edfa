"""ADM reference batches: files in the evaluator's layout are read as it reads them, written
ones read back (by numpy and by the evaluator's reader, re-typed), and sFID features come
from torch-fidelity's Mixed_6d.branch1x1 in TF's order."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from evalrun.metrics.functional.adm_batches import (
    AdmStats,
    adm_spatial_features,
    adm_statistics,
    image_count,
    iter_images,
    npz_keys,
    read_images,
    read_labels,
    read_stats,
    write_adm_batch,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def evaluator_read_arr_0(path, batch_size=64):
    """guided-diffusion's ``open_npz_array`` + ``StreamingNpzArrayReader.read_batch``, re-typed."""
    out = []
    with open(path, "rb") as f, zipfile.ZipFile(f, "r") as zf:
        assert "arr_0.npy" in zf.namelist()
        with zf.open("arr_0.npy", "r") as arr_f:
            version = np.lib.format.read_magic(arr_f)
            assert version in ((1, 0), (2, 0))   # else it would fall back to np.load
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(arr_f)
            assert not fortran and not dtype.hasobject
            idx = 0
            while idx < shape[0]:
                bs = min(batch_size, shape[0] - idx)
                idx += bs
                data = arr_f.read(int(bs * np.prod(shape[1:]) * dtype.itemsize))
                out.append(np.frombuffer(data, dtype=dtype).reshape([bs, *shape[1:]]))
    return out


def evaluator_read_statistics(path):
    """``Evaluator.read_statistics`` when the file carries statistics."""
    obj = np.load(path)
    assert "mu" in list(obj.keys())
    return obj["mu"], obj["sigma"], obj["mu_s"], obj["sigma_s"]


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(21, 8, 6, 3), dtype=np.uint8)
    pool, spatial = rng.normal(size=(21, 5)).astype(np.float32), rng.normal(size=(21, 7)).astype(np.float32)
    return images, adm_statistics(pool, spatial), rng.integers(0, 1000, size=21)


def test_reads_a_file_in_the_evaluators_layout(tmp_path, batch):
    images, st, labels = batch
    path = tmp_path / "VIRTUAL_ref.npz"
    np.savez(path, images, labels, mu=st.mu, sigma=st.sigma, mu_s=st.mu_s, sigma_s=st.sigma_s)   # as the ref batches
    assert set(npz_keys(path)) == {"arr_0", "arr_1", "mu", "sigma", "mu_s", "sigma_s"}
    assert image_count(path) == 21
    assert [b.shape[0] for b in iter_images(path, 8)] == [8, 8, 5]
    assert np.array_equal(np.concatenate(list(iter_images(path, 8))), images)
    assert np.array_equal(read_images(path), images) and np.array_equal(read_labels(path), labels)
    got = read_stats(path)
    for ours, theirs in zip(got, st):
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    assert st.mu.dtype == np.float32 and st.sigma.dtype == np.float64   # as np.mean / np.cov give them


def test_write_round_trip_and_evaluator_reader(tmp_path, batch):
    images, st, labels = batch
    path = write_adm_batch(tmp_path / "samples.npz", images, labels=labels, stats=st)
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(z["arr_0"], images) and z["arr_0"].dtype == np.uint8
        assert np.array_equal(z["arr_1"], labels)
    assert np.array_equal(np.concatenate(evaluator_read_arr_0(path, 64)), images)
    for ours, theirs in zip(evaluator_read_statistics(path), st):
        assert np.array_equal(ours, theirs) and ours.dtype == theirs.dtype
    assert read_stats(path) is not None
    # Streamed from batches: the same file contents.
    streamed = write_adm_batch(tmp_path / "streamed.npz", (images[i:i + 5] for i in range(0, 21, 5)), count=21)
    assert np.array_equal(read_images(streamed), images)
    assert read_stats(streamed) is None and read_labels(streamed) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.npz", "streamed.npz"]


def test_write_refuses_bad_input_without_leaving_files(tmp_path, batch):
    images, st, _ = batch
    with pytest.raises(ValueError, match="uint8"):
        write_adm_batch(tmp_path / "x.npz", images.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="count=30"):
        write_adm_batch(tmp_path / "x.npz", iter([images]), count=30)
    with pytest.raises(ValueError, match="needs their total count"):
        write_adm_batch(tmp_path / "x.npz", iter([images]))
    with pytest.raises(ValueError, match="labels"):
        write_adm_batch(tmp_path / "x.npz", images, labels=[1, 2])
    assert list(tmp_path.iterdir()) == []
    np.savez(tmp_path / "partial.npz", images, mu=st.mu)
    with pytest.raises(ValueError, match="lacks"):
        read_stats(tmp_path / "partial.npz")
    np.savez(tmp_path / "objects.npz", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        image_count(tmp_path / "objects.npz")


def test_spatial_features_order():
    rng = np.random.default_rng(1)
    nchw = rng.normal(size=(3, 192, 17, 17)).astype(np.float32)
    nhwc = nchw.transpose(0, 2, 3, 1)                     # what TF's mixed_6/conv:0 holds
    expected = nhwc[..., :7].reshape([3, -1])             # the evaluator: spatial[..., :7], reshape([N, -1])
    assert expected.shape == (3, 17 * 17 * 7)
    assert np.array_equal(adm_spatial_features(nchw), expected)
    assert np.array_equal(adm_spatial_features(torch.from_numpy(nchw)), expected)
    assert np.array_equal(adm_spatial_features(nhwc, layout="NHWC"), expected)
    with pytest.raises(ValueError, match="channels"):
        adm_spatial_features(nchw[:, :5])


def test_mixed_6d_branch1x1_is_the_spatial_layer(monkeypatch, tmp_path):
    """In torch-fidelity's Inception, Mixed_6d.branch1x1 gives (N, 192, 17, 17) post-ReLU maps at
    299 x 299, and they are the first 192 channels of Mixed_6d's concat (as the 1x1 branch
    mixed_6/conv is in TF's mixed_6/join). Random weights: shapes and wiring, not values."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    cls = fidelity.FeatureExtractorInceptionV3
    monkeypatch.setattr(cls, "load_state_dict", lambda self, state_dict, strict=True: None)
    weights = tmp_path / "empty.pth"
    torch.save({}, weights)
    torch.manual_seed(0)
    model = cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    captured = {}

    class Stop(Exception):
        pass

    def after_block(module, inputs, output):   # nothing later is needed: stop the forward here
        captured["block"] = output.clone()
        raise Stop

    model.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.__setitem__("branch", o.clone()))
    model.Mixed_6d.register_forward_hook(after_block)
    with torch.no_grad(), pytest.raises(Stop):
        model(torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8))
    branch = captured["branch"]
    assert branch.shape == (1, 192, 17, 17) and float(branch.min()) >= 0.0
    assert torch.equal(captured["block"][:, :192], branch)
    assert adm_spatial_features(branch).shape == (1, 2023)


def test_adm_statistics_is_numpy():
    rng = np.random.default_rng(2)
    pool, spatial = rng.normal(size=(9, 4)).astype(np.float32), rng.normal(size=(9, 3))
    st = adm_statistics(pool, spatial)
    assert isinstance(st, AdmStats)
    assert np.array_equal(st.mu, np.mean(pool, axis=0)) and np.array_equal(st.sigma, np.cov(pool, rowvar=False))
    assert np.array_equal(st.sigma_s, np.cov(spatial, rowvar=False))
