"""Brain correlation (encoder-predicted vs measured voxels) and the batched SSIM."""

import numpy as np
import pytest
from scipy.stats import pearsonr
from skimage.metrics import structural_similarity
from sklearn.linear_model import Ridge

from braindecode_suite.evaluation import (
    brain_correlation,
    evaluate_brain_correlation,
    per_image_correlation,
)
from braindecode_suite.evaluation.metrics import ssim_gaussian_batch
from braindecode_suite.utils.validation import BadInputError


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_per_image_correlation_matches_scipy(rng):
    a, b = rng.normal(size=(5, 40)), rng.normal(size=(5, 40))
    expected = [pearsonr(x, y)[0] for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(per_image_correlation(a, b), expected, atol=1e-12)
    flat = per_image_correlation(np.ones((2, 4)), b[:2, :4])
    assert np.isnan(flat).all()


def test_brain_correlation_by_hand_and_per_roi(rng):
    # Worked by hand: image 0 predicted exactly (r = 1), image 1 sign-flipped (r = -1).
    measured = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 3.0, 2.0]])
    predicted = np.array([[2.0, 4.0, 6.0, 8.0], [-4.0, -1.0, -3.0, -2.0]])
    out = brain_correlation(measured, predicted, n_boot=50)
    assert out["BrainCorr/all"]["mean"] == pytest.approx(0.0)
    assert out["BrainCorr/all"]["n_voxels"] == 4
    # per ROI: only voxels 0 and 1 -> r over two voxels is +1 and -1 again
    rois = {"front": np.array([True, True, False, False]), "idx": np.array([2, 3])}
    out = brain_correlation(measured, predicted, rois=rois, n_boot=50, per_item=True)
    assert out["BrainCorr/front"]["values"] == pytest.approx([1.0, -1.0])
    # voxels 2, 3: image 0 (3, 4) vs (6, 8) -> 1; image 1 (3, 2) vs (-3, -2) -> -1
    assert out["BrainCorr/idx"]["values"] == pytest.approx([1.0, -1.0])


def test_brain_correlation_true_vs_shuffled(rng):
    n, v = 40, 200
    measured = rng.normal(size=(n, v))
    predicted = measured + rng.normal(0, 0.5, size=(n, v))
    out = brain_correlation(measured, predicted, stimulus_predicted=measured, n_boot=200)
    entry = out["BrainCorr/all"]
    expected = np.mean([pearsonr(x, y)[0] for x, y in zip(measured, predicted, strict=True)])
    assert entry["mean"] == pytest.approx(expected, abs=1e-12)
    assert entry["mean"] > 0.8 and abs(entry["chance"]) < 0.1
    assert entry["ci"][0] <= entry["mean"] <= entry["ci"][1]
    assert entry["stimulus"] == pytest.approx(1.0)
    shuffled = brain_correlation(measured, predicted[::-1], n_boot=50)["BrainCorr/all"]
    assert abs(shuffled["mean"]) < 0.1


def test_evaluate_brain_correlation_with_a_ridge_encoder(rng):
    # images whose mean colour (centred) drives the voxels; the encoder: an sklearn ridge
    n_train, n_test, v = 120, 20, 60
    weights = rng.normal(size=(3, v))

    def images(k):
        colours = rng.uniform(0, 1, size=(k, 3))
        return np.broadcast_to(colours[:, None, None, :], (k, 8, 8, 3)).copy(), colours

    def features(imgs):
        return imgs.reshape(len(imgs), -1, 3).mean(axis=1)

    train_imgs, train_c = images(n_train)
    encoder = Ridge(alpha=1e-3).fit(features(train_imgs), (train_c - 0.5) @ weights)
    test_imgs, test_c = images(n_test)
    measured = (test_c - 0.5) @ weights + rng.normal(0, 0.1, size=(n_test, v))
    good = evaluate_brain_correlation(
        test_imgs, measured, encoder=encoder, features=features, gt=test_imgs, n_boot=100
    )["BrainCorr/all"]
    bad = evaluate_brain_correlation(
        test_imgs[::-1], measured, encoder=encoder, features=features, n_boot=100
    )["BrainCorr/all"]
    assert good["mean"] > 0.9 and good["stimulus"] == pytest.approx(good["mean"])
    assert bad["mean"] < good["mean"] - 0.3


def test_brain_correlation_bad_input(rng):
    m = rng.normal(size=(4, 10))
    with pytest.raises(BadInputError, match="same shape"):
        brain_correlation(m, m[:, :5])
    with pytest.raises(BadInputError, match="at least 2 test images"):
        brain_correlation(m[:1], m[:1])
    with pytest.raises(BadInputError, match=r"rois\['x'\].*shape \(10,\)"):
        brain_correlation(m, m, rois={"x": np.ones(3, bool)})
    with pytest.raises(BadInputError, match="outside"):
        brain_correlation(m, m, rois={"x": np.array([0, 12])})
    with pytest.raises(BadInputError, match="NaN"):
        brain_correlation(np.full((4, 10), np.nan), m)
    with pytest.raises(BadInputError, match="predict"):
        evaluate_brain_correlation(np.zeros((4, 8, 8, 3)), m, encoder=object(), features=len)


@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("device", [None, "cpu"])
def test_ssim_gaussian_batch_equals_skimage(rng, per_column, device):
    a = rng.random((3, 40, 33))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    extra = {"channel_axis": -1} if per_column else {}
    expected = [
        structural_similarity(
            x, y, **extra, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0,
        )
        for x, y in zip(a, b, strict=True)
    ]  # fmt: skip
    got = ssim_gaussian_batch(a, b, per_column=per_column, device=device, chunk=2)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    with pytest.raises(BadInputError, match="one shape"):
        ssim_gaussian_batch(a, b[:, :5], device=device)
