"""RidgeCV against independent references: scikit-learn, brute-force loops, formulas."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.linear_model import RidgeCV as SkRidgeCV
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from braindecode_suite.models import RidgeCV
from braindecode_suite.models import _ridge_solvers as S
from braindecode_suite.models._backend import get_backend
from braindecode_suite.utils import BadInputError

ALPHAS = np.logspace(-2, 4, 13)
BACKENDS = ["numpy", "torch"]


def _problem(n, p, t=6, seed=0, noise=2.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + rng.standard_normal(p)  # non-zero means
    W = rng.standard_normal((p, t)) * rng.random(t)  # targets of varied SNR
    Y = X @ W + noise * rng.standard_normal((n, t)) + 3.0
    return X, Y, rng.standard_normal((9, p))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(70, 25), (30, 80)], ids=["primal", "dual"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_loo_matches_sklearn_float64(backend, shape, fit_intercept):
    X, Y, Xt = _problem(*shape)
    ref = SkRidgeCV(alphas=ALPHAS, alpha_per_target=True, fit_intercept=fit_intercept).fit(X, Y)
    ours = RidgeCV(ALPHAS, dtype="float64", backend=backend, fit_intercept=fit_intercept).fit(X, Y)
    assert ours.form_ == ("primal" if shape[0] > shape[1] else "dual")
    np.testing.assert_array_equal(ours.best_alphas_, ref.alpha_)
    np.testing.assert_allclose(ours.predict(Xt), ref.predict(Xt), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_loo_matches_sklearn_float32_tolerance(backend):
    X, Y, Xt = _problem(200, 40, t=8, seed=3)
    ref = SkRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y)
    ours = RidgeCV(ALPHAS, backend=backend).fit(X.astype(np.float32), Y.astype(np.float32))
    np.testing.assert_array_equal(ours.best_alphas_, ref.alpha_)
    np.testing.assert_allclose(ours.predict(Xt), ref.predict(Xt), rtol=1e-4, atol=1e-3)


def test_single_alpha_and_one_target_match_sklearn():
    X, Y, Xt = _problem(60, 20)
    ref = SkRidgeCV(alphas=ALPHAS).fit(X, Y)  # one alpha for all targets
    ours = RidgeCV(ALPHAS, alpha_per_target=False, dtype="float64").fit(X, Y)
    assert ours.alpha_ == ref.alpha_
    np.testing.assert_allclose(ours.predict(Xt), ref.predict(Xt), rtol=1e-9)
    ref1 = SkRidgeCV(alphas=ALPHAS).fit(X, Y[:, 0])
    ours1 = RidgeCV(ALPHAS, dtype="float64").fit(X, Y[:, 0])
    assert ours1.predict(Xt).shape == (9,) and ours1.coef_.shape == (20,)
    np.testing.assert_allclose(ours1.predict(Xt), ref1.predict(Xt), rtol=1e-9)


@pytest.mark.parametrize("shape", [(50, 20), (25, 60)])
def test_pruned_loo_choice_equals_full_argmin(shape):
    for seed in range(4):
        X, Y, _ = _problem(*shape, t=40, seed=seed, noise=seed + 0.5)
        for dtype in ("float64", "float32"):
            B = get_backend("numpy", dtype)
            Xc, Yc = B.asarray(X - X.mean(0)), B.asarray(Y - Y.mean(0))
            dec = S.decompose(B, Xc, intercept=True)
            C = dec.U.T @ Yc
            al = B.asarray(ALPHAS)
            full = S.loo_errors(B, dec, Yc, C, al).argmin(0)
            best, n_eval = S.loo_best(B, dec, Yc, C, al)
            np.testing.assert_array_equal(best, full)
            assert n_eval < 13 * 40  # the bounds did prune


def test_dual_and_primal_agree():
    for shape in [(60, 25), (25, 60)]:
        X, Y, Xt = _problem(*shape)
        a = RidgeCV(ALPHAS, form="dual", dtype="float64").fit(X, Y)
        b = RidgeCV(ALPHAS, form="primal", dtype="float64").fit(X, Y)
        np.testing.assert_array_equal(a.best_alphas_, b.best_alphas_)
        np.testing.assert_allclose(a.predict(Xt), b.predict(Xt), rtol=1e-7, atol=1e-8)


def _brute_force_cv(X, Y, splits, alphas):
    sse = np.zeros((len(alphas), Y.shape[1]))
    for train, val in splits:
        for i, a in enumerate(alphas):
            pred = Ridge(alpha=a).fit(X[train], Y[train]).predict(X[val])
            sse[i] += ((Y[val] - pred) ** 2).sum(0)
    return alphas[sse.argmin(0)]


@pytest.mark.parametrize("shape", [(60, 20), (40, 70)])
def test_kfold_choice_matches_brute_force(shape):
    X, Y, Xt = _problem(*shape)
    expected = _brute_force_cv(X, Y, list(KFold(5).split(X)), ALPHAS)
    ours = RidgeCV(ALPHAS, cv=5, dtype="float64").fit(X, Y)
    np.testing.assert_array_equal(ours.best_alphas_, expected)
    # the final model is refitted on all samples with the chosen alphas
    ref = np.column_stack(
        [Ridge(alpha=a).fit(X, Y[:, j]).predict(Xt) for j, a in enumerate(expected)]
    )
    np.testing.assert_allclose(ours.predict(Xt), ref, rtol=1e-8, atol=1e-8)


def test_impossible_cv_is_bad_input():
    X, Y, _ = _problem(30, 10)
    with pytest.raises(BadInputError, match="cannot split these 30 samples.*number of groups"):
        RidgeCV(cv=GroupKFold(5)).fit(X, Y, groups=np.repeat(np.arange(3), 10))


def test_group_kfold_uses_groups():
    X, Y, _ = _problem(60, 20)
    groups = np.repeat(np.arange(6), 10)  # e.g. sessions
    splits = list(GroupKFold(3).split(X, groups=groups))
    expected = _brute_force_cv(X, Y, splits, ALPHAS)
    ours = RidgeCV(ALPHAS, cv=GroupKFold(3), dtype="float64").fit(X, Y, groups=groups)
    np.testing.assert_array_equal(ours.best_alphas_, expected)


def test_gcv_matches_formula():
    X, Y, _ = _problem(40, 15)
    n = len(X)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    crit = []
    for a in ALPHAS:  # hat matrix built explicitly
        H = Xc @ np.linalg.solve(Xc.T @ Xc + a * np.eye(15), Xc.T) + np.ones((n, n)) / n
        R = Yc - (H - np.ones((n, n)) / n) @ Yc
        crit.append((R**2).mean(0) / (1 - np.trace(H) / n) ** 2)
    expected = ALPHAS[np.argmin(crit, axis=0)]
    ours = RidgeCV(ALPHAS, cv="gcv", dtype="float64").fit(X, Y)
    np.testing.assert_array_equal(ours.best_alphas_, expected)


def test_target_batching_changes_nothing():
    X, Y, Xt = _problem(50, 30, t=11)
    one = RidgeCV(ALPHAS, dtype="float64").fit(X, Y)
    many = RidgeCV(ALPHAS, dtype="float64", n_targets_batch=3).fit(X, Y)
    np.testing.assert_array_equal(one.best_alphas_, many.best_alphas_)
    np.testing.assert_allclose(one.predict(Xt), many.predict(Xt), rtol=1e-10)


def test_fit_and_predict_streams_into_a_memmap(tmp_path):
    X, Y, Xt = _problem(40, 70, t=10)
    ref = RidgeCV(ALPHAS, dtype="float64").fit(X, Y)
    out = np.lib.format.open_memmap(tmp_path / "pred.npy", "w+", np.float32, (9, 10))
    pred, best = RidgeCV(ALPHAS, n_targets_batch=4).fit_and_predict(X, Y, Xt, out=out)
    assert pred is out
    np.testing.assert_array_equal(best, ref.best_alphas_)
    np.testing.assert_allclose(
        np.load(tmp_path / "pred.npy"), ref.predict(Xt), rtol=1e-3, atol=1e-3
    )


def test_standardize_x_equals_scaler_pipeline():
    X, Y, Xt = _problem(60, 20)
    X[:, 3] *= 100.0
    ref = make_pipeline(StandardScaler(), SkRidgeCV(alphas=ALPHAS, alpha_per_target=True)).fit(X, Y)
    ours = RidgeCV(ALPHAS, standardize_X=True, dtype="float64").fit(X, Y)
    np.testing.assert_allclose(ours.predict(Xt), ref.predict(Xt), rtol=1e-8)


def test_rescale_predictions_formula():
    X, Y, Xt = _problem(60, 20)
    plain = RidgeCV(ALPHAS, dtype="float64").fit(X, Y).predict(Xt)
    scaled = RidgeCV(ALPHAS, dtype="float64", rescale_predictions=True).fit(X, Y).predict(Xt)
    z = (plain - plain.mean(0)) / plain.std(0)
    np.testing.assert_allclose(scaled, z * Y.std(0) + Y.mean(0), rtol=1e-8)


def test_degenerate_inputs():
    X, Y, Xt = _problem(30, 10)
    Xc = X.copy()
    Xc[:, 2] = 5.0  # a constant voxel: no effect, no error
    m = RidgeCV(ALPHAS, dtype="float64", standardize_X=True).fit(Xc, Y)
    assert np.all(np.isfinite(m.coef_)) and np.allclose(m.coef_[:, 2], 0)
    Yc = Y.copy()
    Yc[:, 0] = 7.0  # a constant target is predicted as its value
    np.testing.assert_allclose(RidgeCV(ALPHAS).fit(X, Yc).predict(Xt)[:, 0], 7.0, rtol=1e-6)
    Xn = X.copy()
    Xn[4, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        RidgeCV().fit(Xn, Y)
    with pytest.raises(BadInputError, match="at least 2 samples"):
        RidgeCV().fit(X[:1], Y[:1])
    with pytest.raises(BadInputError, match="alphas must be .* > 0"):
        RidgeCV(alphas=[1.0, 0.0]).fit(X, Y)
    with pytest.raises(BadInputError, match="alphas must be"):
        RidgeCV(alphas=[]).fit(X, Y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        RidgeCV().fit(X, Y[:-1])
    with pytest.raises(BadInputError, match="'cv'.*Did you mean 'loo'"):
        RidgeCV(cv="lo").fit(X, Y)
    with pytest.raises(BadInputError, match="Y must be 2-D with one row per sample"):
        RidgeCV().fit_and_predict(X, Y[:-1], Xt)
    Yn = Y.copy()
    Yn[3, 4] = np.inf
    with pytest.raises(BadInputError, match="Y contains NaN or inf.*column 4"):
        RidgeCV().fit_and_predict(X, Yn, Xt)


def test_save_and_load_round_trip(tmp_path):
    X, Y, Xt = _problem(40, 70)
    m = RidgeCV(ALPHAS, cv=KFold(4), rescale_predictions=True).fit(X, Y)
    m.save_pretrained(tmp_path / "ridge")
    assert sorted(p.name for p in (tmp_path / "ridge").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    back = RidgeCV.from_pretrained(tmp_path / "ridge")
    np.testing.assert_array_equal(back.predict(Xt), m.predict(Xt))
    np.testing.assert_array_equal(back.best_alphas_, m.best_alphas_)
    with pytest.raises(BadInputError, match="holds no config.json"):
        RidgeCV.from_pretrained(tmp_path)


def test_sklearn_pipeline_and_clone():
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    X, Y, _ = _problem(60, 20)
    pipe = make_pipeline(StandardScaler(), RidgeCV(ALPHAS))
    scores = cross_val_score(pipe, X, Y[:, 0], cv=3)
    assert np.all(np.isfinite(scores))
    assert clone(RidgeCV(ALPHAS, cv=3)).get_params()["cv"] == 3


def test_torch_cuda_refused_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(BadInputError, match="no CUDA device"):
        RidgeCV(backend="torch", device="cuda").fit(*_problem(20, 5)[:2])
    with pytest.raises(BadInputError, match="CPU only"):
        RidgeCV(backend="numpy", device="cuda").fit(*_problem(20, 5)[:2])


@pytest.mark.gpu
def test_cuda_matches_numpy():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    X, Y, Xt = _problem(200, 300, t=50)
    a = RidgeCV(ALPHAS, backend="torch", device="cuda", dtype="float64").fit(X, Y)
    b = RidgeCV(ALPHAS, dtype="float64").fit(X, Y)
    np.testing.assert_array_equal(a.best_alphas_, b.best_alphas_)
    np.testing.assert_allclose(a.predict(Xt), b.predict(Xt), rtol=1e-8)


def test_sklearn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(RidgeCV(), on_fail=None)
    failed = [
        (r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"
    ]
    assert not failed, failed
    assert sum(r["status"] == "passed" for r in results) > 40
