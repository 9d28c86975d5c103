"""Image metrics against independent references (scipy, scikit-image, torchvision, by hand)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from scipy.stats import binomtest, pearsonr
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from braindecode_suite.evaluation import (
    bootstrap_ci,
    compute_pixcorr,
    compute_ssim,
    correlation_distance,
    identification_pvalue,
    mismatched_baseline,
    resize_images,
    two_way_identification,
)
from braindecode_suite.utils.validation import BadInputError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _images(rng, n=3, h=23, w=29):
    """Unequal height and width on purpose, so axis mix-ups fail."""
    return rng.random((n, h, w, 3)).astype(np.float32)


def _hand_resize(images, size):
    """torchvision's tensor Resize, the call MindEye's notebooks make."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    out = TF.resize(t, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return out.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------ resize


@pytest.mark.parametrize("size", [11, 40])  # down and up
def test_resize_matches_torchvision(rng, size):
    x = _images(rng)
    got = resize_images(x, size)
    assert got.shape == (3, size, size, 3)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.clip(_hand_resize(x, size), 0, 1), atol=1e-6)


def test_resize_uint8_is_scaled(rng):
    x = (rng.random((2, 8, 8, 3)) * 255).astype(np.uint8)
    same = resize_images(x, 8)
    assert same.dtype == np.float32 and 0 <= same.min() and same.max() <= 1
    np.testing.assert_allclose(same, x / 255, atol=1e-6)  # no resampling at the same size
    np.testing.assert_allclose(
        resize_images(x, 5), resize_images(x.astype(np.float32) / 255, 5), atol=1e-6
    )


# ------------------------------------------------------------------------------ PixCorr


def test_pixcorr_matches_scipy_pearsonr(rng):
    pred = _images(rng, h=31, w=27)
    gt = (rng.random((3, 20, 20, 3)) * 255).astype(np.uint8)  # different size and dtype
    size = 17
    got = compute_pixcorr(pred, gt, size=size)
    a = _hand_resize(pred, size)
    b = _hand_resize(gt.astype(np.float32) / 255, size)
    expected = [pearsonr(a[i].ravel(), b[i].ravel())[0] for i in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_pixcorr_identical_is_one(rng):
    x = _images(rng)
    np.testing.assert_allclose(compute_pixcorr(x, x, size=16), 1.0, atol=1e-6)


# ------------------------------------------------------------------------------ SSIM


def test_ssim_matches_skimage(rng):
    pred = _images(rng, h=30, w=26)
    gt = _images(rng, h=40, w=40)
    size = 24
    got = compute_ssim(pred, gt, size=size)
    pg = rgb2gray(_hand_resize(pred, size))
    gg = rgb2gray(_hand_resize(gt, size))
    expected = [
        structural_similarity(
            pg[i],
            gg[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_ssim_identical_is_one(rng):
    x = _images(rng)
    np.testing.assert_allclose(compute_ssim(x, x, size=16), 1.0, atol=1e-6)


# ------------------------------------------------------------------------------ two-way


def _brute_force_two_way(gt, pred):
    n = len(gt)
    scores = np.zeros(n)
    for j in range(n):
        r_jj = np.corrcoef(gt[j].ravel(), pred[j].ravel())[0, 1]
        wins = 0
        for i in range(n):
            if i != j and np.corrcoef(gt[i].ravel(), pred[j].ravel())[0, 1] < r_jj:
                wins += 1
        scores[j] = wins / (n - 1)
    return scores


def test_two_way_matches_brute_force(rng):
    gt = rng.standard_normal((12, 4, 5))
    pred = gt + 1.5 * rng.standard_normal((12, 4, 5))
    np.testing.assert_allclose(two_way_identification(gt, pred), _brute_force_two_way(gt, pred))


def test_two_way_hand_worked_3x3():
    # gt rows are the one-hot vectors e0, e1, e2. Centred, e_a = (2/3, -1/3, -1/3) up to
    # order, norm sqrt(6)/3; corr(e_a, e_a) = 1 and corr(e_a, e_b) = (-1/3) / (2/3) = -0.5.
    # pred0 = e0:        R[:, 0] = (1, -0.5, -0.5); R[0,0] = 1 beats both -> 2/2 = 1.
    # pred1 = (2, 0, 1): centred (1, -1, 0), norm sqrt(2); dot with centred e0, e1, e2 =
    #                    (1, -1, 0) -> R[:, 1] = (0.866, -0.866, 0); R[1,1] = -0.866 beats
    #                    neither 0.866 nor 0 -> 0/2 = 0.
    # pred2 = (0, 2, 1): centred (-1, 1, 0) -> R[:, 2] = (-0.866, 0.866, 0); R[2,2] = 0 beats
    #                    -0.866 (i=0) but not 0.866 (i=1) -> 1/2 = 0.5.
    gt = np.eye(3)
    pred = np.array([[1.0, 0, 0], [2, 0, 1], [0, 2, 1]])
    np.testing.assert_allclose(two_way_identification(gt, pred), [1.0, 0.0, 0.5])


def test_two_way_perfect_and_negated(rng):
    gt = rng.standard_normal((10, 7))
    np.testing.assert_array_equal(two_way_identification(gt, gt), 1.0)
    np.testing.assert_array_equal(two_way_identification(gt, 2 * gt + 3), 1.0)
    np.testing.assert_array_equal(two_way_identification(gt, -gt), 0.0)


def test_two_way_random_is_chance(rng):
    gt = rng.standard_normal((200, 16))
    pred = rng.standard_normal((200, 16))
    assert abs(two_way_identification(gt, pred).mean() - 0.5) < 0.05


# ------------------------------------------------------------------------------ p-value


def test_pvalue_matches_binomtest(rng):
    gt = rng.standard_normal((9, 6))
    scores = two_way_identification(gt, gt + rng.standard_normal((9, 6)))
    n = 9 * 8
    k = int(round(scores.mean() * n))
    expected = binomtest(k, n, 0.5, alternative="greater").pvalue
    assert identification_pvalue(scores, 9) == pytest.approx(expected)
    assert identification_pvalue(scores.mean(), 9) == pytest.approx(expected)
    assert identification_pvalue(np.ones(9), 9) < 1e-10
    assert identification_pvalue(np.zeros(9), 9) == pytest.approx(1.0)


def test_pvalue_bad_input():
    with pytest.raises(BadInputError, match=r"n_items=4"):
        identification_pvalue(np.full(3, 0.5), 4)
    with pytest.raises(BadInputError, match=r"n_items must be >= 2"):
        identification_pvalue(0.5, 1)


# ------------------------------------------------------------------------------ correlation distance


def test_correlation_distance(rng):
    gt = rng.standard_normal((5, 3, 4))
    pred = rng.standard_normal((5, 3, 4))
    expected = [1 - pearsonr(gt[i].ravel(), pred[i].ravel())[0] for i in range(5)]
    np.testing.assert_allclose(correlation_distance(gt, pred), expected)
    np.testing.assert_allclose(correlation_distance(gt, gt), 0, atol=1e-12)
    np.testing.assert_allclose(correlation_distance(gt, -gt), 2, atol=1e-12)


# ------------------------------------------------------------------------------ bootstrap


def test_bootstrap_ci(rng):
    small = rng.standard_normal(30)
    low, high = bootstrap_ci(small)
    assert low < small.mean() < high
    big = rng.standard_normal(3000)
    low_b, high_b = bootstrap_ci(big)
    assert low_b < big.mean() < high_b
    assert high_b - low_b < (high - low) / 4  # width ~ 1/sqrt(n): 10x narrower expected
    assert bootstrap_ci(small, random_state=3) == bootstrap_ci(small, random_state=3)
    with pytest.raises(BadInputError, match=r"ci must lie strictly between 0 and 1"):
        bootstrap_ci(small, ci=95)


# ------------------------------------------------------------------------------ baseline


def test_mismatched_baseline_is_derangement(rng):
    gt = rng.standard_normal((6, 4))
    seen = []

    def record(pred, shuffled):
        seen.append(shuffled)
        return np.zeros(len(pred))

    mismatched_baseline(record, gt, gt, random_state=1)
    rows = [int(np.flatnonzero((gt == row).all(axis=1))[0]) for row in seen[0]]
    assert sorted(rows) == list(range(6))
    assert all(r != i for i, r in enumerate(rows))


def test_mismatched_baseline_pixcorr_is_chance(rng):
    x = _images(rng, n=8)
    base = mismatched_baseline(compute_pixcorr, x, x, size=12)
    assert base.shape == (8,)
    assert abs(base.mean()) < 0.1  # independent noise images: r ~ 0
    assert compute_pixcorr(x, x, size=12).mean() > 0.99


# ------------------------------------------------------------------------------ bad input


def test_bad_images(rng):
    x = _images(rng)
    with pytest.raises(BadInputError, match=r"same number of images, got 3 predictions and 2"):
        compute_pixcorr(x, x[:2])
    with pytest.raises(BadInputError, match=r"pred must be a 4-D array.*got shape \(23, 29, 3\)"):
        compute_ssim(x[0], x)
    with pytest.raises(BadInputError, match=r"gt must have 3 colour channels.*got 1 channel"):
        compute_pixcorr(x, x[..., :1])
    with pytest.raises(
        BadInputError,
        match=r"pred is a float array with values in \[0\.\d+, 2\].*must lie in \[0, 1\]",
    ):
        compute_pixcorr(x * 2, x)
    with pytest.raises(BadInputError, match=r"uint8 \(0\.\.255\) or float.*int64"):
        compute_pixcorr(x.astype(np.int64), x)


def test_bad_features(rng):
    with pytest.raises(BadInputError, match=r"at least 2 items, got 1"):
        two_way_identification(np.ones((1, 4)), np.ones((1, 4)))
    with pytest.raises(BadInputError, match=r"same shape.*\(3, 4\) and \(2, 4\)"):
        two_way_identification(rng.random((3, 4)), rng.random((2, 4)))
    feats = rng.random((3, 4))
    const = feats.copy()
    const[1] = 0.5
    with pytest.raises(BadInputError, match=r"pred_features has 1 constant row.*item 1"):
        two_way_identification(feats, const)
    with pytest.raises(BadInputError, match=r"gt_features must have shape \(n_items"):
        correlation_distance(np.ones(3), np.ones(3))
