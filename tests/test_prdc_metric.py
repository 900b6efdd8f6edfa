"""PRDC and the ADM evaluator's precision/recall as metrics of a run: hand-built point sets (each
image one constant colour, the backbone a user's Python class giving channel means, so every
feature is a point chosen here) scored through the metric classes, the run's feature store and
the reference cache, against direct numpy implementations and known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dist_helpers import colour_images, numpy_adm_pr, numpy_prdc, run_metric, save_pngs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BACKBONE = {"feature_extractor": {"_target_": "dist_helpers.ChannelMeans"}}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Reference: 30 distinct colours. Generated sets: identical, disjoint, a tight cluster inside the
    reference (a subset), the reference with one point replaced by an outlier."""
    rng = np.random.default_rng(0)
    real = rng.choice(np.arange(40, 200), size=(30, 3)).astype(np.uint8)
    real = np.unique(real, axis=0)[:24]
    cluster = np.clip(real[:1].astype(int) + rng.integers(-2, 3, size=(12, 3)), 0, 255).astype(np.uint8)
    outlier = real.copy()
    outlier[0] = (250, 5, 250)
    tmp = tmp_path_factory.mktemp("prdc")
    ref_dir = save_pngs(colour_images(real), tmp / "ref")
    gen = {"identical": real, "disjoint": np.clip(real.astype(int) // 8 + 0, 0, 25).astype(np.uint8) + 0,
           "subset": cluster, "outlier": outlier}
    gen["disjoint"][:, 2] = 250   # far from every reference colour (all have blue <= 199)
    return {"real": real, "gen": gen, "ref_dir": ref_dir, "cache": tmp / "cache"}


def _points(colours):
    return np.asarray(colours, np.float32) / 255   # what ChannelMeans gives for a constant image (float32 mean)


@pytest.mark.parametrize("case", ["identical", "disjoint", "subset", "outlier"])
def test_prdc_metric_equals_numpy_on_hand_built_sets(sets, case):
    result, metric, _ = run_metric("prdc", colour_images(sets["gen"][case]), sets["ref_dir"], sets["cache"],
                                   nearest_k=5, **BACKBONE)
    features = metric.store().features(metric.extractor, _batch(sets["gen"][case]))["embedding"]
    real = metric.reference.features(metric.extractor, "embedding", "prdc")[0]
    np.testing.assert_allclose(features, _points(sets["gen"][case]), rtol=1e-6)   # the points chosen
    want = numpy_prdc(real, features, 5)
    got = tuple(result.values[c] for c in ("prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage"))
    assert got == pytest.approx(want, abs=1e-12), (case, got, want)
    known = {"identical": (1.0, 1.0, 1.0, 1.0), "disjoint": (0.0, 0.0, 0.0, 0.0)}
    if case in known:
        assert got == known[case]
    if case == "subset":   # the generated set sits inside the real manifold but covers little of it
        assert got[0] == 1.0 and got[1] < 0.2 and got[3] < 0.2
    if case == "outlier":
        assert got[0] == pytest.approx(23 / 24)


def test_prdc_roles_are_the_papers(sets):
    """Real = reference, fake = generated: swapping the two (torch-fidelity #58) would give precision
    < 1 and recall 1 for the cluster; here precision is 1 and recall small."""
    result, *_ = run_metric("prdc", colour_images(sets["gen"]["subset"]), sets["ref_dir"], sets["cache"], **BACKBONE)
    swapped = numpy_prdc(_points(sets["gen"]["subset"]), _points(sets["real"]), 5)
    assert result.values["prdc_precision"] == 1.0 and swapped[0] < 0.2
    assert result.values["prdc_recall"] < 0.2 and swapped[1] == 1.0


@pytest.mark.parametrize("case", ["identical", "disjoint", "subset", "outlier"])
def test_adm_precision_recall_metric_equals_numpy(sets, case):
    gen = colour_images(sets["gen"][case])
    want = numpy_adm_pr(_points(sets["real"]), _points(sets["gen"][case]), 3)
    for arithmetic in ("float64", "float16"):   # float16: the evaluator's; same answers on these separated points
        result, *_ = run_metric("adm", gen, sets["ref_dir"], sets["cache"], arithmetic=arithmetic, **BACKBONE)
        got = (result.values["adm_precision"], result.values["adm_recall"])
        assert got == pytest.approx(want, abs=1e-12), (case, arithmetic, got, want)
    known = {"identical": (1.0, 1.0), "disjoint": (0.0, 0.0)}
    if case in known:
        assert got == known[case]
    if case == "subset":
        assert got[0] == 1.0 and got[1] < 0.2
    if case == "outlier":
        assert got[0] == pytest.approx(23 / 24)


def test_prdc_bootstrap_interval_is_recorded(sets):
    result, metric, _ = run_metric("prdc", colour_images(sets["gen"]["outlier"]), sets["ref_dir"], sets["cache"],
                                   bootstrap=20, **BACKBONE)
    v = result.values
    for c in ("prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage"):
        assert v[f"{c}_ci95_low"] <= v[f"{c}_ci95_high"]
    info = result.info["prdc_bootstrap"]
    assert info["resamples"] == 20 and info["seed"] == 0 and info["reference_resampled"] == 24
    assert metric.settings()["bootstrap_seed"] == 0


def _batch(colours):
    from evalrun.metrics.base import ImageBatch

    imgs = colour_images(colours)
    return ImageBatch(imgs, [{} for _ in imgs])


@pytest.mark.parametrize("name", ["adm", "fd", "prdc"])
def test_non_finite_features_are_refused_by_name_before_any_metric_uses_them(sets, name):
    """A backbone giving NaN for one image: ADM counted it as a sample off the manifold (precision 0.9 for
    1.0 on the other nine), FD failed in the eigensolver with a LinAlgError."""
    from evalrun.errors import EvalrunError

    colours = np.concatenate([sets["gen"]["identical"]] * 3)[:70]
    colours[66] = 255   # all white: NaN features, in the run's second 64-image chunk
    with pytest.raises(EvalrunError, match=r"NaN or infinite 'embedding' features for 1 of 6 generated images "
                                           r"64-69 \(first: generated image 66,"):
        run_metric(name, colour_images(colours), sets["ref_dir"], sets["cache"] / "nan",
                   feature_extractor={"_target_": "dist_helpers.WhiteIsNaN"})
    if name == "fd":  # the reference's images are named as such, counted across its batches
        reference = sets["real"][:12].copy()
        reference[9] = 255
        ref_dir = save_pngs(colour_images(reference), sets["cache"].parent / "white_ref")
        with pytest.raises(EvalrunError, match=r"for 1 of 4 reference images 8-11 \(first: reference image 9,"):
            run_metric(name, colour_images(sets["real"][:12]), ref_dir, sets["cache"] / "nan_ref",
                       feature_extractor={"_target_": "dist_helpers.WhiteIsNaN"}, batch_size=4)


def test_the_functions_refuse_non_finite_features_too():
    from evalrun.metrics.functional.adm_precision_recall import adm_precision_recall
    from evalrun.metrics.functional.fid import GaussianStats, frechet_distance_info

    real = np.random.default_rng(0).normal(size=(12, 3))
    fake = real[:10].copy()
    fake[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        adm_precision_recall(real, fake, arithmetic="float64")
    with pytest.raises(ValueError, match="second set's statistics hold NaN"):
        frechet_distance_info(GaussianStats.from_features(real), GaussianStats.from_features(fake))
