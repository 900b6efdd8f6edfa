"""FID-infinity as a metric of a run: per-N FIDs on the subsets Chong & Forsyth's code draws, the fit
against 1/N, the intercept recovered exactly from synthetic FIDs that follow a + b/N; and the
bootstrap interval of a set metric through the run's config (fid.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from dist_helpers import colour_images, frechet64, run_metric

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BACKBONE = {"feature_extractor": {"_target_": "dist_helpers.ChannelMeans"}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fidinf")
    lo, hi = 60, 200   # colours uniform on integers: exact mean and variance of the features
    var = ((hi - lo + 1) ** 2 - 1) / 12 / 255 ** 2
    mu = np.full(3, (lo + hi) / 2 / 255) + np.array([0.05, -0.03, 0.02])
    np.savez(tmp / "ref.npz", mu=mu, sigma=np.eye(3) * var)
    images = colour_images(np.random.default_rng(0).integers(lo, hi + 1, size=(600, 3)), size=2)
    return {"ref": {"kind": "npz", "path": str(tmp / "ref.npz")}, "mu": mu, "sigma": np.eye(3) * var,
            "images": images, "cache": tmp / "cache"}


def test_per_n_fids_and_fit_are_chong_forsyths(setup):
    from evalrun.metrics.functional.fid_infinity import infinity_sizes, subset_indices

    result, metric, _ = run_metric("fid_inf", setup["images"], None, setup["cache"], reference=setup["ref"],
                                   min_n=100, num_points=6, seed=3, **BACKBONE)
    features = np.asarray(setup["images"][:, :, 0, 0], np.float32) / 255
    sizes = infinity_sizes(600, 100, 6)
    want = [frechet64(features[rows], (setup["mu"], setup["sigma"])) for rows in subset_indices(600, sizes, 3)]
    points = np.array(result.info["fid_inf_points"])
    assert list(points[:, 0]) == list(sizes) == [100, 200, 300, 400, 500, 600]
    np.testing.assert_allclose(points[:, 1], want, rtol=1e-9)
    slope, intercept = np.polyfit(1.0 / sizes, want, 1)
    assert result.values["fid_inf"] == pytest.approx(intercept, rel=1e-9)
    assert result.values["fid_inf_slope"] == pytest.approx(slope, rel=1e-9)
    assert 0 <= result.values["fid_inf_r2"] <= 1
    assert metric.settings()["seed"] == 3 and metric.required_images() == 101


def test_intercept_of_synthetic_a_plus_b_over_n_is_recovered(setup, monkeypatch):
    """FIDs built to follow a + b/N exactly: the metric's intercept is a, its slope b, its R^2 1."""
    import evalrun.metrics.functional.fid_infinity as fi

    monkeypatch.setattr(fi, "frechet_to", lambda ref, device="cpu": (lambda subset: 3.25 + 700.0 / len(subset)))
    result, *_ = run_metric("fid_inf", setup["images"], None, setup["cache"], reference=setup["ref"], min_n=50,
                            num_points=15, **BACKBONE)
    assert result.values["fid_inf"] == pytest.approx(3.25, abs=1e-9)
    assert result.values["fid_inf_slope"] == pytest.approx(700.0, rel=1e-9)
    assert result.values["fid_inf_r2"] == pytest.approx(1.0, abs=1e-12)


def test_too_few_images_is_refused(setup):
    from evalrun.errors import EvalrunError
    from evalrun.metrics import MetricContext, build_metric

    assert build_metric("fid_inf", {}, MetricContext(reference=setup["ref"])).required_images() == 5001  # checked before generation
    with pytest.raises(EvalrunError, match="more than min_n=5000"):
        run_metric("fid_inf", setup["images"][:10], None, setup["cache"], reference=setup["ref"], **BACKBONE)


def test_fd_bootstrap_against_fixed_statistics(setup):
    """A statistics file cannot be resampled: only generated images are, and the record says so."""
    result, metric, _ = run_metric("fd", setup["images"][:200], None, setup["cache"], reference=setup["ref"],
                                   bootstrap=100, bootstrap_seed=7, **BACKBONE)
    v, info = result.values, result.info["fd_bootstrap"]
    assert v["fd_ci95_low"] <= v["fd"] <= v["fd_ci95_high"]
    assert info["seed"] == 7 and info["reference_resampled"] is None and "fixed" in info["reference"]
    assert metric.settings()["bootstrap_reference"] is False
    again, *_ = run_metric("fd", setup["images"][:200], None, setup["cache"], reference=setup["ref"], bootstrap=100,
                           bootstrap_seed=7, **BACKBONE)
    assert again.values == v   # seeded: the same resamples
