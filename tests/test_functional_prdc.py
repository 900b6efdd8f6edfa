"""PRDC (Naeem et al. 2020) and ADM precision/recall (Kynkaanniemi et al. 2019 as in
guided-diffusion's evaluator) against direct computations: plain loops, the official prdc
package when installed, and the evaluator's own loops re-typed with a numpy distance block."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from evalrun.metrics.functional import adm_precision_recall as adm
from evalrun.metrics.functional.prdc import knn_radii, prdc


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- PRDC

def prdc_loops(real, fake, k):
    """The paper's definitions with explicit loops (strict <, radius = k-th other neighbour)."""
    def dist(a, b):
        return float(np.sqrt(((a - b) ** 2).sum()))

    def radii(x):
        return [sorted(dist(x[i], x[j]) for j in range(len(x)))[k] for i in range(len(x))]   # [0] is self

    r_real, r_fake = radii(real), radii(fake)
    n, m = len(real), len(fake)
    inside = [[dist(real[i], fake[j]) < r_real[i] for i in range(n)] for j in range(m)]
    precision = sum(any(row) for row in inside) / m
    density = sum(sum(row) for row in inside) / (k * m)
    recall = sum(any(dist(real[i], fake[j]) < r_fake[j] for j in range(m)) for i in range(n)) / n
    coverage = sum(min(dist(real[i], fake[j]) for j in range(m)) < r_real[i] for i in range(n)) / n
    return precision, recall, density, coverage


def test_prdc_matches_loops_and_block_size():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 5)), rng.normal(size=(33, 5)) * 1.3 + 0.4
    expected = prdc_loops(real, fake, 5)
    for block in (None, 1, 7):
        assert tuple(prdc(real, fake, 5, block=block)) == pytest.approx(expected, abs=1e-15)
    assert prdc(real, fake, 3) == pytest.approx(prdc_loops(real, fake, 3), abs=1e-15)


def test_prdc_matches_official_package():
    compute_prdc = pytest.importorskip("prdc").compute_prdc
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(150, 16)), rng.normal(size=(120, 16)) * 1.1 + 0.2
    ours = prdc(real, fake, nearest_k=5, block=64)
    theirs = compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    assert ours._asdict() == pytest.approx({k: float(v) for k, v in theirs.items()}, abs=1e-12)


def test_prdc_known_sets():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(60, 3))
    same = prdc(real, real.copy())
    assert (same.precision, same.recall, same.coverage) == (1.0, 1.0, 1.0)
    assert same.density == pytest.approx(prdc_loops(real, real, 5)[2], abs=1e-15)
    assert tuple(prdc(real, real + 1000.0)) == (0.0, 0.0, 0.0, 0.0)
    # One generated outlier: every other fake sits on a real point (inside its ball).
    fake = np.vstack([real, [[50.0, 50.0, 50.0]]])
    assert prdc(real, fake).precision == pytest.approx(60 / 61)
    # One real outlier: no fake ball reaches it (recall), but its own huge ball holds a fake (coverage).
    out = prdc(np.vstack([real, [[50.0, 50.0, 50.0]]]), real)
    assert out.recall == pytest.approx(60 / 61) and out.coverage == 1.0


def test_prdc_roles_not_swapped():
    """Mode collapse: the generated set is the 20 real points nearest one real point. Every fake
    lies on the real manifold (precision 1) but covers a sliver of it (low recall, coverage).
    With real and generated swapped (torch-fidelity #58) precision would be the low one."""
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 2))
    fake = real[np.argsort(((real - real[0]) ** 2).sum(1))[:20]]
    out = prdc(real, fake)
    assert out.precision == 1.0
    assert out.recall < 0.2 and out.coverage < 0.2
    swapped = prdc(fake, real)
    assert swapped.precision < 0.2


def test_prdc_exact_zero_for_duplicates_and_validation():
    x = np.ones((6, 4)) * 1e3
    assert knn_radii(x, 2).tolist() == [0.0] * 6    # duplicates: neighbours at exactly 0
    with pytest.raises(ValueError, match="nearest_k"):
        prdc(np.zeros((5, 2)), np.zeros((4, 2)), nearest_k=4)
    with pytest.raises(ValueError, match="dimensions"):
        prdc(np.zeros((5, 2)), np.zeros((5, 3)))


# --------------------------------------------------------------------------- ADM precision/recall

class NumpyDistanceBlock:
    """The evaluator's DistanceBlock with TensorFlow replaced: float16 first, float32 if not finite."""

    def __init__(self, arithmetic):
        self.arithmetic = arithmetic

    def pairwise_distances(self, u, v):
        u, v = torch.tensor(u), torch.tensor(v)
        if self.arithmetic == "float16":
            d = adm._distances16(u, v, adm._sq_norms16(u), adm._sq_norms16(v))
            if not torch.isfinite(d).all():
                d = adm._distances_exact(u, v, torch.float32)
        else:
            d = adm._distances_exact(u, v, getattr(torch, self.arithmetic))
        return d.numpy()

    def less_thans(self, batch_1, radii_1, batch_2, radii_2):
        d = self.pairwise_distances(batch_1, batch_2)[..., None]
        return (d <= radii_2).any(axis=1), (d <= radii_1[:, None]).any(axis=0)


def evaluator_manifold_radii(block, features, batch, nhood_sizes=(3,)):
    """``ManifoldEstimator.manifold_radii`` re-typed (guided-diffusion evaluations/evaluator.py)."""
    num_images = len(features)
    radii = np.zeros([num_images, len(nhood_sizes)], dtype=np.float32)
    distance_batch = np.zeros([batch, num_images], dtype=np.float32)
    seq = np.arange(max(nhood_sizes) + 1, dtype=np.int32)
    for begin1 in range(0, num_images, batch):
        end1 = min(begin1 + batch, num_images)
        for begin2 in range(0, num_images, batch):
            end2 = min(begin2 + batch, num_images)
            distance_batch[0:end1 - begin1, begin2:end2] = block.pairwise_distances(features[begin1:end1],
                                                                                  features[begin2:end2])
        radii[begin1:end1, :] = np.partition(distance_batch[0:end1 - begin1, :], seq, axis=1)[:, list(nhood_sizes)]
    return radii


def evaluator_evaluate_pr(block, features_1, radii_1, features_2, radii_2, batch):
    """``ManifoldEstimator.evaluate_pr`` re-typed."""
    features_1_status = np.zeros([len(features_1), radii_2.shape[1]], dtype=bool)
    features_2_status = np.zeros([len(features_2), radii_1.shape[1]], dtype=bool)
    for begin_1 in range(0, len(features_1), batch):
        end_1 = begin_1 + batch
        for begin_2 in range(0, len(features_2), batch):
            end_2 = begin_2 + batch
            b1_in, b2_in = block.less_thans(features_1[begin_1:end_1], radii_1[begin_1:end_1],
                                            features_2[begin_2:end_2], radii_2[begin_2:end_2])
            features_1_status[begin_1:end_1] |= b1_in
            features_2_status[begin_2:end_2] |= b2_in
    return (np.mean(features_2_status.astype(np.float64), axis=0)[0],
            np.mean(features_1_status.astype(np.float64), axis=0)[0])


def evaluator_prec_recall(ref, sample, arithmetic, batch):
    block = NumpyDistanceBlock(arithmetic)
    r1, r2 = evaluator_manifold_radii(block, ref, batch), evaluator_manifold_radii(block, sample, batch)
    return r1[:, 0], r2[:, 0], evaluator_evaluate_pr(block, ref, r1, sample, r2, batch)


def inception_like(rng, n, d, shift):
    """Non-negative, low-rank-ish features like pool_3 activations."""
    w = np.random.default_rng(99).normal(size=(d, 8)) / 3
    return (np.maximum(rng.normal(size=(n, 8)) @ w.T + shift, 0) * 1.5).astype(np.float32)


@pytest.mark.parametrize("arithmetic", ["float16", "float32", "float64"])
def test_adm_matches_evaluator_loops(arithmetic):
    rng = np.random.default_rng(4)
    ref, sample = inception_like(rng, 130, 24, 0.3), inception_like(rng, 110, 24, 0.35)
    r1, r2, (p, r) = evaluator_prec_recall(ref, sample, arithmetic, batch=50)
    ours = partial(adm.adm_manifold_radii, arithmetic=arithmetic, batch=50)
    m1, m2 = ours(ref), ours(sample)
    assert np.array_equal(m1.astype(np.float32), r1) and np.array_equal(m2.astype(np.float32), r2)
    assert adm.adm_evaluate_pr(ref, m1, sample, m2, arithmetic=arithmetic, batch=50) == (p, r)
    assert adm.adm_precision_recall(ref, sample, arithmetic=arithmetic, batch=50) == (p, r)
    assert 0 < p < 1 and 0 < r < 1
    # Smaller row blocks inside the evaluator's blocks: the BLAS may round a float32 product of
    # another shape differently in the last bit, nothing more.
    np.testing.assert_allclose(ours(ref, block=13), m1, rtol=1e-6)
    assert adm.adm_evaluate_pr(ref, m1, sample, m2, arithmetic=arithmetic, batch=50, block=9) == (p, r)


def test_adm_float64_is_the_definition():
    """Squared distances, radius = 4th smallest in the row (self included), <=, reference radii
    for precision, sample radii for recall, computed with plain loops."""
    rng = np.random.default_rng(5)
    ref, sample = rng.normal(size=(30, 4)), rng.normal(size=(25, 4)) + 0.5
    sq = lambda a, b: float(((a - b) ** 2).sum())
    rad = lambda x: [sorted(sq(x[i], x[j]) for j in range(len(x)))[3] for i in range(len(x))]
    r_ref, r_s = rad(ref), rad(sample)
    precision = np.mean([any(sq(ref[i], s) <= r_ref[i] for i in range(len(ref))) for s in sample])
    recall = np.mean([any(sq(r, sample[j]) <= r_s[j] for j in range(len(sample))) for r in ref])
    p, r = adm.adm_precision_recall(ref, sample, arithmetic="float64")
    assert (p, r) == pytest.approx((precision, recall), abs=1e-15)


def test_adm_roles():
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(300, 2)).astype(np.float32)
    sample = ref[np.argsort(((ref - ref[0]) ** 2).sum(1))[:15]]
    p, r = adm.adm_precision_recall(ref, sample, arithmetic="float64")
    assert p == 1.0 and r < 0.1


def test_adm_float16_fallback_blocks():
    """Overflowing float16 blocks fall back to float32 block by block, as tf.cond does; blocks
    whose cheap bound fails but which stay finite keep float16."""
    rng = np.random.default_rng(7)
    big = inception_like(rng, 60, 32, 0.3) * 60.0           # squared norms ~1e5: float16 overflows
    mid = inception_like(rng, 60, 32, 0.3) * 9.0            # bound above 60000, values finite
    small = inception_like(rng, 60, 32, 0.3)
    for ref, sample in ((big, small), (mid, mid[::-1].copy()), (np.vstack([big, small]), small)):
        r1, r2, (p, r) = evaluator_prec_recall(ref, sample, "float16", batch=40)
        m1, m2 = adm.adm_manifold_radii(ref, batch=40), adm.adm_manifold_radii(sample, batch=40)
        assert np.array_equal(m1, r1) and np.array_equal(m2, r2)
        assert adm.adm_evaluate_pr(ref, m1, sample, m2, batch=40) == (p, r)
    as32 = partial(adm.adm_manifold_radii, arithmetic="float32", batch=40)
    assert np.array_equal(adm.adm_manifold_radii(big, batch=40), as32(big))         # every block fell back
    assert not np.array_equal(adm.adm_manifold_radii(mid, batch=40), as32(mid))     # float16 kept


def test_adm_validation():
    with pytest.raises(ValueError, match="arithmetic"):
        adm.adm_precision_recall(np.zeros((5, 2)), np.zeros((5, 2)), arithmetic="bfloat16")
    with pytest.raises(ValueError, match="k must be"):
        adm.adm_manifold_radii(np.zeros((3, 2)), k=3)
