"""BandedRidgeCV against himalaya used directly, and on data with known group relevance."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytest.importorskip("himalaya")

from himalaya.backend import get_backend, set_backend  # noqa: E402
from himalaya.kernel_ridge import (  # noqa: E402
    ColumnKernelizer,
    Kernelizer,
    MultipleKernelRidgeCV,
)
from scipy.stats import pearsonr  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from braindecode_suite.models.banded import BandedRidgeCV  # noqa: E402
from braindecode_suite.utils.validation import BadInputError  # noqa: E402

P1, P2, N_TRAIN = 20, 30, 300
ALPHAS = np.logspace(-2, 8, 11)
SETTINGS = dict(alphas=ALPHAS, cv=3, n_iter=12, random_state=0)


@pytest.fixture(scope="module")
def data():
    """Voxels 0-4 driven by group 1 only, voxels 5-9 by group 2 only, plus an offset."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N_TRAIN + 100, P1 + P2))
    W = np.zeros((P1 + P2, 10))
    W[:P1, :5] = rng.standard_normal((P1, 5))
    W[P1:, 5:] = rng.standard_normal((P2, 5))
    Y = X @ W + 2.0 * rng.standard_normal((X.shape[0], 10)) + 3.0
    return X[:N_TRAIN], Y[:N_TRAIN], X[N_TRAIN:], Y[N_TRAIN:]


@pytest.fixture(scope="module")
def fitted(data):
    X, Y, _, _ = data
    return BandedRidgeCV([P1, P2], **SETTINGS).fit(X, Y)


def test_irrelevant_group_is_regularised_away(data, fitted):
    _, _, X_test, Y_test = data
    model = fitted
    assert model.deltas_.shape == (2, 10)
    assert model.group_alphas_.shape == (10, 2)
    assert_allclose(model.group_alphas_, np.exp(-model.deltas_).T)
    assert_allclose(model.best_alphas_, 1 / np.exp(model.deltas_).sum(0))
    log_a = np.log10(model.group_alphas_)
    # the irrelevant group is regularised much more: >= 10x for every voxel, >= 1000x typically
    gap = np.r_[log_a[:5, 1] - log_a[:5, 0], log_a[5:, 0] - log_a[5:, 1]]
    assert np.all(gap > 1), log_a
    assert np.median(gap) > 3, log_a
    pred = model.predict(X_test)
    r = [pearsonr(Y_test[:, j], pred[:, j])[0] for j in range(10)]
    assert np.all(np.array(r) > 0.5), r
    assert_allclose(model.score(X_test, Y_test), np.mean(r))
    assert model.n_features_in_ == P1 + P2
    assert_allclose(model.groups_, np.repeat([0, 1], [P1, P2]))


def test_matches_himalaya_directly(data, fitted):
    X, Y, X_test, _ = data
    previous = get_backend().name
    set_backend("numpy")
    try:
        kernelizer = ColumnKernelizer(
            [
                ("a", make_pipeline(StandardScaler(with_std=False), Kernelizer()), slice(0, P1)),
                ("b", make_pipeline(StandardScaler(with_std=False), Kernelizer()), slice(P1, None)),
            ]
        )
        mkr = MultipleKernelRidgeCV(
            kernels="precomputed",
            solver="random_search",
            solver_params=dict(
                n_iter=SETTINGS["n_iter"],
                alphas=ALPHAS,
                concentration=[0.1, 1.0],
                progress_bar=False,
            ),
            fit_intercept=True,
            cv=SETTINGS["cv"],
            random_state=SETTINGS["random_state"],
        )
        ref = make_pipeline(kernelizer, mkr).fit(X, Y)
        ref_pred = ref.predict(X_test)
    finally:
        set_backend(previous)
    assert_allclose(fitted.deltas_, mkr.deltas_, rtol=1e-10)
    assert_allclose(fitted.intercept_, mkr.intercept_, rtol=1e-10)
    assert_allclose(fitted.predict(X_test), ref_pred, rtol=1e-8, atol=1e-10)


def test_sizes_and_labels_agree(data, fitted):
    X, Y, X_test, _ = data
    labels = np.repeat([4, 7], [P1, P2])
    by_labels = BandedRidgeCV(labels, **SETTINGS).fit(X, Y)
    assert_allclose(by_labels.group_names_, [4, 7])
    assert_allclose(by_labels.deltas_, fitted.deltas_)
    assert_allclose(by_labels.predict(X_test), fitted.predict(X_test))


def test_backend_restored_and_torch_agrees(data, fitted):
    pytest.importorskip("torch")
    X, Y, X_test, _ = data
    before = get_backend().name
    model = BandedRidgeCV([P1, P2], backend="torch", **SETTINGS).fit(X, Y)
    assert get_backend().name == before
    assert model.backend_ == "torch"
    pred = model.predict(X_test)
    assert isinstance(pred, np.ndarray)
    assert get_backend().name == before
    assert_allclose(pred, fitted.predict(X_test), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ([20, 20], r"sum to 40, but X has 50 features"),
        ([20, 0, 30], r"sizes must all be >= 1"),
        (np.zeros(49, dtype=int), r"labels have length 49, but X has 50 features"),
        (np.zeros(50), r"1-D integer labels"),
        ("abc", r"groups must be a list of block sizes"),
    ],
)
def test_bad_groups(data, groups, match):
    X, Y, _, _ = data
    with pytest.raises(BadInputError, match=match):
        BandedRidgeCV(groups, n_iter=2).fit(X, Y)


def test_bad_inputs(data):
    X, Y, _, _ = data
    with pytest.raises(BadInputError, match="'backend' parameter.*'numpy'.*but got 'cupy'"):
        BandedRidgeCV([P1, P2], backend="cupy").fit(X, Y)
    with pytest.raises(BadInputError, match="X with 300 and Y with 299"):
        BandedRidgeCV([P1, P2]).fit(X, Y[:-1])
    with pytest.raises(BadInputError, match="alphas must be a 1-D sequence of positive"):
        BandedRidgeCV([P1, P2], alphas=[1.0, -1.0]).fit(X, Y)


def test_predict_checks(fitted, data):
    _, _, X_test, _ = data
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        BandedRidgeCV([P1, P2]).predict(X_test)
    with pytest.raises(
        BadInputError, match="X has 49 features, but BandedRidgeCV was fitted with 50"
    ):
        fitted.predict(X_test[:, :49])
