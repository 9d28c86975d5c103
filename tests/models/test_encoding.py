"""Encoding scores and noise ceilings against scipy / scikit-learn / hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import pearsonr
from sklearn.linear_model import RidgeCV as SkRidgeCV
from sklearn.metrics import r2_score

from braindecode_suite.models.encoding import (
    EncodingModel,
    compute_ncsnr,
    compute_noise_ceiling,
    compute_pearson_r,
    compute_r2,
    noise_normalized,
    score_encoding,
)
from braindecode_suite.utils.validation import BadInputError


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    y_true = rng.standard_normal((37, 5))
    y_pred = 0.6 * y_true + rng.standard_normal((37, 5))
    return y_true, y_pred


def test_pearson_r_matches_scipy(pair):
    y_true, y_pred = pair
    expected = [pearsonr(y_true[:, j], y_pred[:, j])[0] for j in range(5)]
    assert_allclose(compute_pearson_r(y_true, y_pred), expected, rtol=1e-12)
    # 1-D input = one target
    r1 = compute_pearson_r(y_true[:, 0], y_pred[:, 0])
    assert r1.shape == (1,)
    assert_allclose(r1[0], expected[0], rtol=1e-12)


def test_pearson_r_constant_column_is_nan(pair):
    y_true, y_pred = pair
    y_true = y_true.copy()
    y_true[:, 1] = 3.0
    y_pred = y_pred.copy()
    y_pred[:, 2] = -1.0
    with np.errstate(all="raise"):
        r = compute_pearson_r(y_true, y_pred)
    assert np.isnan(r[1]) and np.isnan(r[2])
    assert np.all(np.isfinite(r[[0, 3, 4]]))


def test_r2_matches_sklearn(pair):
    y_true, y_pred = pair
    assert_allclose(
        compute_r2(y_true, y_pred),
        r2_score(y_true, y_pred, multioutput="raw_values"),
        rtol=1e-12,
    )


def test_r2_constant_true_column_is_nan(pair):
    # R2 is undefined there: sklearn gives 0.0 (force_finite=True, its default; 1.0 for a
    # perfect prediction) or -inf (force_finite=False). We choose nan.
    y_true, y_pred = pair
    y_true = y_true.copy()
    y_true[:, 3] = 2.0
    y_pred = y_pred.copy()
    y_pred[:, 4] = y_true[:, 4] = 1.0  # constant and perfectly predicted
    with np.errstate(all="raise"):
        r2 = compute_r2(y_true, y_pred)
    assert np.isnan(r2[3]) and np.isnan(r2[4])
    ref = r2_score(y_true, y_pred, multioutput="raw_values")
    assert ref[3] == 0.0 and ref[4] == 1.0
    assert_allclose(r2[:3], ref[:3], rtol=1e-12)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        (np.zeros((5, 2)), np.zeros((5, 3)), "same shape"),
        (np.zeros((1, 2)), np.zeros((1, 2)), "at least 2 samples"),
        (np.zeros((5, 2, 2)), np.zeros((5, 2, 2)), "y_true must be a 1-D or 2-D"),
        (np.full((5, 2), np.nan), np.zeros((5, 2)), "y_true contains 10 non-finite"),
    ],
)
def test_scores_bad_input(y_true, y_pred, match):
    with pytest.raises(BadInputError, match=match):
        compute_r2(y_true, y_pred)


def test_ncsnr_recovers_known_snr():
    # 2000 stimuli x 3 repeats, signal sd s and noise sd e per voxel: ncsnr = s / e.
    # The estimate's sampling error grows at low and high SNR (with 200 stimuli it is ~10-25%
    # at s/e = 0.3 or 2), hence many stimuli and s/e in [0.5, 2].
    rng = np.random.default_rng(1)
    n_stim, n_rep = 2000, 3
    s = np.array([0.5, 1.0, 1.0, 2.0, 0.75, 1.5])
    e = np.array([1.0, 1.0, 0.5, 1.0, 1.0, 3.0])
    signal = rng.standard_normal((n_stim, 1, s.size)) * s
    noise = rng.standard_normal((n_stim, n_rep, s.size)) * e
    betas = (5.0 + signal + noise).reshape(n_stim * n_rep, s.size)
    ids = np.repeat(np.arange(n_stim), n_rep)
    perm = rng.permutation(ids.size)  # trial order must not matter
    nc = compute_ncsnr(betas[perm], ids[perm])
    assert nc.shape == (s.size,)
    assert_allclose(nc, s / e, rtol=0.1)


def test_ncsnr_by_hand_and_options():
    # two stimuli x 2 repeats, already z-scored: noise var = mean of across-repeat variances
    betas = np.array([[1.0], [3.0], [-2.0], [-2.0], [7.0]])
    ids = np.array(["a", "a", "b", "b", "c"])  # "c" has one trial -> ignored for noise
    noise_var = (np.var([1.0, 3.0], ddof=1) + 0.0) / 2  # = 1.0
    # 1 - 1.0 = 0 signal
    assert_allclose(compute_ncsnr(betas, ids, zscore=False), [0.0])
    betas2 = betas * 0.5
    noise_var = np.var([0.5, 1.5], ddof=1) / 2  # = 0.25
    expected = np.sqrt(1 - noise_var) / np.sqrt(noise_var)
    assert_allclose(compute_ncsnr(betas2, ids, zscore=False), [expected])
    # zscore=True: z-score with ddof=1 first, then the same recipe
    z = (betas - betas.mean()) / betas.std(ddof=1)
    assert_allclose(compute_ncsnr(betas, ids), compute_ncsnr(z, ids, zscore=False))


def test_ncsnr_bad_input():
    with pytest.raises(BadInputError, match="stimuli shown at least twice"):
        compute_ncsnr(np.ones((3, 2)), [1, 2, 3])
    with pytest.raises(BadInputError, match=r"stimulus_ids must be 1-D .* shape \(3,\)"):
        compute_ncsnr(np.ones((3, 2)), [1, 1])
    with pytest.raises(BadInputError, match="betas must be a 2-D array"):
        compute_ncsnr(np.ones(3), [1, 1, 2])


def test_noise_ceiling_formula():
    assert_allclose(compute_noise_ceiling(1.0, 3), 75.0)
    assert_allclose(compute_noise_ceiling(0.0, 3), 0.0)
    assert_allclose(compute_noise_ceiling(1.0, 1), 50.0)
    assert_allclose(compute_noise_ceiling([2.0, np.inf], 3), [100 * 4 / (4 + 1 / 3), 100.0])
    # mixed repeats: 1/n replaced by its mean over test stimuli (NSD)
    reps = [3, 3, 1]
    assert_allclose(compute_noise_ceiling(1.0, reps), 100 / (1 + (1 / 3 + 1 / 3 + 1) / 3))
    with pytest.raises(BadInputError, match="n_repeats must be an int >= 1"):
        compute_noise_ceiling(1.0, 0)
    with pytest.raises(BadInputError, match="ncsnr must be >= 0"):
        compute_noise_ceiling([-1.0], 3)


def test_noise_normalized_hand_values():
    nc = np.array([50.0, 80.0, 0.0, -5.0, np.nan])
    r2 = np.array([0.25, 0.4, 0.1, 0.1, 0.1])
    # 100 * R2 / NC: R2 = 0.25 against a 50 % ceiling -> 0.5, half of the explainable variance
    assert_allclose(noise_normalized(r2, nc), [0.5, 0.5, np.nan, np.nan, np.nan])
    r = np.array([0.5, -0.4, 0.1, 0.1, 0.1])
    # 100 * sign(r) * r**2 / NC
    assert_allclose(noise_normalized(r, nc, kind="r"), [0.5, -0.2, np.nan, np.nan, np.nan])
    with pytest.raises(BadInputError, match="'kind' parameter.*'r2', 'r'"):
        noise_normalized(r, nc, kind="R2")
    with pytest.raises(BadInputError, match="same shape"):
        noise_normalized(r, nc[:2])


def test_score_encoding_keys_and_values(pair):
    y_true, y_pred = pair
    out = score_encoding(y_true, y_pred)
    assert set(out) == {"pearson_r", "r2", "summary"}
    assert set(out["summary"]) == {"median_r", "mean_r", "median_r2"}
    nc = np.full(5, 40.0)
    out = score_encoding(y_true, y_pred, noise_ceiling=nc)
    assert_allclose(out["nc_normalized_r2"], 100 * out["r2"] / 40.0)
    assert_allclose(out["summary"]["median_nc_normalized_r2"], np.median(out["nc_normalized_r2"]))
    assert_allclose(out["summary"]["mean_r"], np.mean(out["pearson_r"]))
    with pytest.raises(
        BadInputError, match=r"noise_ceiling must have shape \(n_voxels,\) = \(5,\)"
    ):
        score_encoding(y_true, y_pred, noise_ceiling=np.ones(4))


@pytest.fixture
def encoding_data():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((80, 7))
    Y = X @ rng.standard_normal((7, 9)) + 0.5 * rng.standard_normal((80, 9))
    return X, Y


def test_encoding_model_matches_sklearn(encoding_data):
    X, Y = encoding_data
    est = SkRidgeCV(alphas=np.logspace(-2, 3, 6), alpha_per_target=True)
    model = EncodingModel(est).fit(X[:60], Y[:60])
    ref = SkRidgeCV(alphas=np.logspace(-2, 3, 6), alpha_per_target=True).fit(X[:60], Y[:60])
    assert model.estimator_ is not est  # cloned
    assert_allclose(model.predict(X[60:]), ref.predict(X[60:]), rtol=1e-12)
    assert model.n_features_in_ == 7 and model.n_targets_ == 9
    expected_r = [pearsonr(Y[60:, j], ref.predict(X[60:])[:, j])[0] for j in range(9)]
    assert_allclose(model.score(X[60:], Y[60:]), np.mean(expected_r), rtol=1e-10)
    out = model.score_voxels(X[60:], Y[60:], noise_ceiling=np.full(9, 90.0))
    assert set(out) == {"pearson_r", "r2", "nc_normalized_r2", "summary"}
    assert_allclose(out["r2"], r2_score(Y[60:], ref.predict(X[60:]), multioutput="raw_values"))


def test_encoding_model_bad_inputs(encoding_data):
    X, Y = encoding_data
    model = EncodingModel(SkRidgeCV())
    with pytest.raises(BadInputError, match="same number of samples.*X with 80 and Y with 79"):
        model.fit(X, Y[:-1])
    with pytest.raises(BadInputError, match=r"X must be a 2-D array .*got shape \(80,\)"):
        model.fit(X[:, 0], Y)
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(BadInputError, match="X contains 1 non-finite"):
        model.fit(Xn, Y)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, Y)
    with pytest.raises(
        BadInputError, match="X has 6 features, but this EncodingModel was fitted with 7"
    ):
        model.predict(X[:, :6])


def test_encoding_model_default_ridge(encoding_data):
    ridge = pytest.importorskip("braindecode_suite.models.ridge")
    if not hasattr(ridge, "RidgeCV"):
        pytest.skip("RidgeCV not built yet")
    X, Y = encoding_data
    model = EncodingModel().fit(X[:60], Y[:60])
    assert isinstance(model.estimator_, ridge.RidgeCV)
    assert model.predict(X[60:]).shape == (20, 9)
    assert model.score(X[60:], Y[60:]) > 0.8
