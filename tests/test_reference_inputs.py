"""Bad reference inputs: unreadable images (strict or skipped, cold or cached, folder or dataset),
malformed statistics files, and the export command's device and flag names in its errors."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from evalrun.errors import EvalrunError
from evalrun.metrics.functional.fid import GaussianStats
from evalrun.reference.cache import Reference
from evalrun.reference.npz import load_npz, save_npz
from evalrun.reference.spec import ReferenceSpec
from test_reference import CountingPool, photos, reference_features, spec  # noqa: F401  (photos: fixture)


@pytest.fixture
def junk_photos(photos):
    """The photos plus one file that is not an image."""
    (photos / "zz.png").write_text("junk\n")
    return photos


def test_strict_refuses_unreadable_images_also_from_a_cached_entry(junk_photos, tmp_path):
    cache, pool = tmp_path / "cache", CountingPool()
    feats, info = reference_features(spec(junk_photos), pool, cache)
    n = len(list(junk_photos.iterdir())) - 1
    assert len(feats) == n and info["reference_skipped"] == 1
    assert info["reference_skipped_files"] == [str(junk_photos / "zz.png")]
    with pytest.raises(EvalrunError) as cold:  # a fresh cache: refused while reading
        reference_features(spec(junk_photos, strict=True), CountingPool(), tmp_path / "cold")
    with pytest.raises(EvalrunError) as warm:  # the entry computed without strict: refused the same
        reference_features(spec(junk_photos, strict=True), pool, cache)
    for exc in (cold.value, warm.value):
        assert str(exc).startswith(f"reference image {junk_photos / 'zz.png'} cannot be read (")
        assert "reference.strict=false" in str(exc) and "\n" not in str(exc)
    assert pool.seen == n  # nothing recomputed to find out
    copy = shutil.copytree(junk_photos, tmp_path / "copy")  # same content elsewhere: the copy's file is named
    with pytest.raises(EvalrunError, match=f"^reference image {re.escape(str(copy / 'zz.png'))} cannot be read"):
        Reference(spec(copy, strict=True), cache).stats(pool, "pixels", "fid")
    assert Reference(spec(copy), cache).stats(pool, "pixels", "fid")[1]["reference_cache"] == "hit"


def test_dataset_reference_skips_or_refuses_an_unreadable_image(junk_photos, tmp_path):
    pytest.importorskip("datasets")
    ds_spec = lambda **kw: ReferenceSpec.from_config(  # noqa: E731
        {"kind": "dataset", "path": str(junk_photos), "split": "train", "resize": 16, **kw}, "test")
    folder, _ = reference_features(spec(junk_photos, resize=16), CountingPool(), tmp_path / "c1")
    feats, info = reference_features(ds_spec(), CountingPool(), tmp_path / "c2")
    assert info["reference_skipped"] == 1 and info["reference_skipped_files"] == [str(junk_photos / "zz.png")]
    a, b = GaussianStats.from_features(folder), GaussianStats.from_features(feats)  # the same 12 images
    assert len(feats) == len(folder) and np.allclose(a.mu, b.mu, atol=1e-12) and np.allclose(a.sigma, b.sigma, atol=1e-12)
    for cache in (tmp_path / "c3", tmp_path / "c2"):  # cold, then the cached entry
        with pytest.raises(EvalrunError, match=f"^reference image {re.escape(str(junk_photos / 'zz.png'))} "
                                               f"cannot be read .*reference.strict=false"):
            reference_features(ds_spec(strict=True), CountingPool(), cache)


def _stats(tmp_path) -> GaussianStats:
    return GaussianStats.from_features(np.random.default_rng(0).random((40, 8)))


@pytest.mark.parametrize("arrays, message", [
    ({"n": np.array([1, 2, 3])}, "'n' must be the sample count, one integer"),
    ({"n": np.float64(2.5)}, "'n' must be the sample count, one integer"),
    ({"evalrun_meta": np.array("[1, 2]")}, "'evalrun_meta' must be a JSON object"),
    ({"evalrun_meta": np.array("{not json")}, "'evalrun_meta' is not JSON"),
    ({"evalrun_meta": np.array(json.dumps({"extractor": "inception"}))}, "'evalrun_meta' names its extractor as str"),
    ({"negative": True}, r"sigma has a negative variance \(sigma\[3,3\] = -0.5\)"),
])
def test_malformed_npz_is_refused_in_one_line(tmp_path, arrays, message):
    stats, arrays = _stats(tmp_path), dict(arrays)
    sigma = stats.sigma.copy()
    if arrays.pop("negative", False):
        sigma[3, 3] = -0.5
    path = tmp_path / "bad.npz"
    np.savez(path, mu=stats.mu, sigma=sigma, **arrays)
    with pytest.raises(EvalrunError, match=f"^{re.escape(str(path))}: {message}") as exc:
        load_npz(path)
    assert "\n" not in str(exc.value)
    ref = Reference(ReferenceSpec.from_config({"kind": "npz", "path": str(path)}, "fid"), tmp_path / "c")
    with pytest.raises(EvalrunError, match=message):  # as a run reads it (reference=npz)
        ref.stats(CountingPool(), "pixels", "fid")


def test_sigma_must_be_symmetric_up_to_round_off(tmp_path):
    stats = _stats(tmp_path)
    for rel, ok in ((1e-3, False), (1e-5, False), (1e-9, True)):  # 1e-9: summation order, float32 files
        sigma = stats.sigma.copy()
        sigma[0, 1] += rel * np.abs(sigma).max()
        path = tmp_path / f"s{rel}.npz"
        np.savez(path, mu=stats.mu.astype(np.float32), sigma=sigma.astype(np.float32), n=np.float64(40))
        if ok:
            back, meta = load_npz(path)
            assert back.n == 40 and meta == {} and np.allclose(back.sigma, stats.sigma, rtol=1e-6, atol=1e-7)
        else:  # symmetrising it silently would hide a file that is not what it claims
            with pytest.raises(EvalrunError, match=rf"^{re.escape(str(path))}: sigma is not symmetric \(max "
                                                   rf"\|sigma - sigma.T\| = "):
                load_npz(path)
    save_npz(tmp_path / "b.npz", GaussianStats(stats.mu, stats.sigma, None), {"extractor": None})
    back, meta = load_npz(tmp_path / "b.npz")  # evalrun's own layout, count unknown (n=-1)
    assert back.n is None and meta == {"extractor": None} and np.array_equal(back.sigma, stats.sigma)


def _export_error(capsys, *argv) -> str:
    from evalrun.reference.__main__ import main

    assert main(["--cache-dir", "unused", "export", *argv, "out.npz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err[len("error: "):].strip()


def test_export_cli_names_its_own_flags_and_checks_the_device(photos, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _export_error(capsys, "--path", str(photos), "--device", "cuda") == \
        "--device 'cuda' but CUDA is not available here; use --device cpu or --device auto"
    assert _export_error(capsys, "--path", str(photos), "--device", "cpux") == \
        "--device 'cpux' is not a torch device; use cpu, cuda, cuda:N or auto"
    assert _export_error(capsys, "--path", str(photos), "--limit", "0") == "--limit must be a positive integer, got 0"
    assert _export_error(capsys, "--path", str(tmp_path / "missing")) == \
        f"--path {tmp_path / 'missing'}: not a directory of images"
    assert _export_error(capsys).startswith("export needs --path DIR")
    not_weights = tmp_path / "stats.npz"
    save_npz(not_weights, _stats(tmp_path))
    err = _export_error(capsys, "--path", str(photos), "--weights", str(not_weights))
    assert err.endswith("To use this file anyway set --weights-sha256 any (its hash is recorded)"), err
    assert "reference." not in err and "feature_extractor" not in err
