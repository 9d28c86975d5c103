"""Functional alignment against independent references (scipy, sklearn, brainiak, fmralign)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from scipy.stats import ortho_group

from braindecode_suite.alignment import (
    FunctionalAlignmentAdapter,
    Hyperalignment,
    ProcrustesAlignment,
    RidgeAlignment,
    SharedResponseModel,
    align_then_decode,
    load_alignment,
)
from braindecode_suite.datasets import make_multisubject
from braindecode_suite.models import RidgeCV
from braindecode_suite.utils.validation import BadInputError


def _semi_orthogonal(p, q, seed):
    """(p, q) with orthonormal columns (p >= q) or rows (p < q)."""
    m = ortho_group.rvs(max(p, q), random_state=seed)
    return m[:p, :q]


# ---------------------------------------------------------------------- Procrustes
def test_procrustes_recovers_rotation_like_scipy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 20))
    Q = ortho_group.rvs(20, random_state=1)
    Y = 2.5 * X @ Q + 0.05 * rng.standard_normal((60, 20))
    ref_R, ref_sum = scipy.linalg.orthogonal_procrustes(X, Y)
    fit = ProcrustesAlignment(scaling=True, center=False).fit(X, Y)
    np.testing.assert_allclose(fit.rotation_, ref_R, atol=1e-10)
    np.testing.assert_allclose(fit.rotation_, Q, atol=0.01)
    assert fit.scale_ == pytest.approx(ref_sum / np.sum(X**2), rel=1e-10)
    assert fit.scale_ == pytest.approx(2.5, rel=0.01)
    np.testing.assert_allclose(fit.transform(X), fit.scale_ * X @ ref_R, atol=1e-10)
    assert ProcrustesAlignment().fit(X, Y).scale_ == 1.0


@pytest.mark.parametrize("p, q", [(30, 20), (20, 30)])
def test_procrustes_semi_orthogonal(p, q):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((80, p))
    R0 = _semi_orthogonal(p, q, seed=3)
    offset = rng.standard_normal(q)
    Y = X @ R0 + offset + 0.1 * rng.standard_normal((80, q))
    fit = ProcrustesAlignment().fit(X, Y)
    R = fit.rotation_
    assert R.shape == (p, q)
    small = R.T @ R if p > q else R @ R.T
    np.testing.assert_allclose(small, np.eye(min(p, q)), atol=1e-10)
    # R maximises tr(Rᵀ Xcᵀ Yc) over semi-orthogonal maps (compare with random ones)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    best = np.trace(R.T @ Xc.T @ Yc)
    for seed in range(5):
        other = _semi_orthogonal(p, q, seed=10 + seed)
        assert best > np.trace(other.T @ Xc.T @ Yc)
    assert best >= np.trace(R0.T @ Xc.T @ Yc) - 1e-9
    if p < q:  # orthonormal rows: this is the least-squares fit, and it finds R0
        np.testing.assert_allclose(R, R0, atol=0.05)
        np.testing.assert_allclose(fit.transform(X), X @ R0 + offset, atol=0.15)


def test_procrustes_matches_fmralign():
    methods = pytest.importorskip("fmralign.methods")
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 25))
    Y = X @ _semi_orthogonal(25, 35, seed=5) + 0.3 * rng.standard_normal((50, 35))
    ref = methods.Procrustes(scaling=True).fit(X, Y)
    ours = ProcrustesAlignment(scaling=True, center=False).fit(X, Y)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), atol=1e-8)


# ---------------------------------------------------------------------- ridge
def test_ridge_alignment_matches_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.linear_model import RidgeCV as SkRidgeCV

    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, 15))
    Y = X @ rng.standard_normal((15, 12)) + 0.3 * rng.standard_normal((40, 12)) + np.arange(12)
    ours = RidgeAlignment(alphas=[3.0], dtype="float64").fit(X, Y)
    ref = Ridge(alpha=3.0).fit(X, Y)
    X_new = rng.standard_normal((7, 15))
    np.testing.assert_allclose(ours.transform(X_new), ref.predict(X_new), atol=1e-8)
    alphas = [0.01, 0.1, 1.0, 10.0, 100.0]
    ours = RidgeAlignment(alphas=alphas, dtype="float64").fit(X, Y)
    ref = SkRidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
    np.testing.assert_allclose(ours.best_alphas_, ref.alpha_)
    np.testing.assert_allclose(ours.transform(X_new), ref.predict(X_new), atol=1e-6)


# ---------------------------------------------------------------------- SRM
def _srm_data(n=80, k=5, voxels=(30, 40, 50), noise=0.1, seed=7):
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((n, k)) * np.arange(k, 0, -1)  # distinct component variances
    S -= S.mean(0)
    Ws = [_semi_orthogonal(v, k, seed=seed + i) for i, v in enumerate(voxels)]
    Xs = [S @ W.T + noise * rng.standard_normal((n, W.shape[0])) for W in Ws]
    return S, Ws, Xs


def test_srm_recovers_shared_response_up_to_rotation():
    S, Ws, Xs = _srm_data()
    srm = SharedResponseModel(n_components=5, n_iter=10).fit(Xs)
    # canonical correlations between the true and the fitted shared response = cos(angles)
    canon = np.cos(scipy.linalg.subspace_angles(S, srm.s_))
    assert canon.min() > 0.995
    for W, w in zip(Ws, srm.w_, strict=True):
        np.testing.assert_allclose(w.T @ w, np.eye(5), atol=1e-10)
        assert np.cos(scipy.linalg.subspace_angles(W, w)).min() > 0.99
    assert np.all(np.diff(srm.objective_) <= 1e-9)  # alternating updates never increase it
    # the fitted model reconstructs each subject from the shared response
    recon = srm.inverse_transform_subject(srm.transform_subject(Xs[1], 1), 1)
    assert np.linalg.norm(recon - Xs[1]) / np.linalg.norm(Xs[1]) < 0.1


def test_srm_new_subject_lands_in_the_shared_space():
    S, Ws, Xs = _srm_data()
    srm = SharedResponseModel(n_components=5, n_iter=10).fit(Xs[:2])
    shared_new = srm.transform_new_subject(Xs[2])
    assert len(srm.w_) == 3 and srm.w_[2].shape == (50, 5)
    assert np.linalg.norm(shared_new - srm.s_) / np.linalg.norm(srm.s_) < 0.05
    np.testing.assert_allclose(srm.transform_subject(Xs[2], 2), shared_new)
    assert [a.shape for a in srm.transform(Xs)] == [(80, 5)] * 3


def test_srm_matches_brainiak_detsrm():
    srm_mod = pytest.importorskip("brainiak.funcalign.srm")
    _, _, Xs = _srm_data(noise=0.3)
    Xs = [X - X.mean(0) for X in Xs]  # brainiak does not centre
    ref = srm_mod.DetSRM(n_iter=20, features=5, rand_seed=0).fit([X.T for X in Xs])
    ours = SharedResponseModel(n_components=5, n_iter=20, center=False).fit(Xs)
    # same shared space (the rotation inside it is arbitrary) and the same loss
    assert np.cos(scipy.linalg.subspace_angles(ref.s_.T, ours.s_)).min() > 0.9999
    ref_loss = ref._objective_function([X.T for X in Xs], ref.w_, ref.s_)
    assert ours.objective_[-1] == pytest.approx(ref_loss, rel=1e-4)
    for w_ref, w in zip(ref.w_, ours.w_, strict=True):
        assert np.cos(scipy.linalg.subspace_angles(w_ref, w)).min() > 0.999


# ---------------------------------------------------------------------- hyperalignment
def _between_subject_r(A, B):
    """Mean correlation of matching columns across samples."""
    A, B = A - A.mean(0), B - B.mean(0)
    return float(np.mean((A * B).sum(0) / np.sqrt((A * A).sum(0) * (B * B).sum(0))))


def _identification(A, B):
    """Fraction of rows of A whose most correlated row of B is the same stimulus."""
    A = (A - A.mean(1, keepdims=True)) / A.std(1, keepdims=True)
    B = (B - B.mean(1, keepdims=True)) / B.std(1, keepdims=True)
    return float(np.mean((A @ B.T).argmax(1) == np.arange(len(A))))


PAIRS = ((0, 1), (0, 2), (1, 2))


def test_hyperalignment_improves_between_subject_correlation():
    data = make_multisubject(3, n_shared=200, n_unique=0, latent_dim=8, voxels=60, seed=2)
    ids = data.shared_ids
    train, test = ids[:150], ids[150:]
    ha = Hyperalignment(n_iter=3).fit([data.responses(s, train) for s in data.subjects])
    raw = [data.responses(s, test) for s in data.subjects]
    aligned = ha.transform(raw)
    r_before = np.mean([_between_subject_r(raw[a], raw[b]) for a, b in PAIRS])
    r_after = np.mean([_between_subject_r(aligned[a], aligned[b]) for a, b in PAIRS])
    id_before = np.mean([_identification(raw[a], raw[b]) for a, b in PAIRS])
    id_after = np.mean([_identification(aligned[a], aligned[b]) for a, b in PAIRS])
    # measured (seed 2): r -0.009 -> 0.19; identification among 50 held-out stimuli
    # (chance 0.02) 0.00 -> 0.15. Voxel j of one subject is unrelated to voxel j of another.
    assert abs(r_before) < 0.05 and r_after > 0.15
    assert id_before < 0.06 and id_after > 0.1
    assert ha.template_.shape == (150, 60)


def test_hyperalignment_different_voxel_counts_and_new_subject():
    data = make_multisubject(4, n_shared=150, n_unique=0, latent_dim=6, voxels=(40, 55, 70, 45))
    ids = data.shared_ids
    train, test = ids[:100], ids[100:]
    ha = Hyperalignment(n_components=20, n_iter=2, scaling=True)
    ha.fit([data.responses(s, train) for s in (1, 2, 3)])
    assert [w.shape for w in ha.w_] == [(40, 20), (55, 20), (70, 20)]
    ha.transform_new_subject(data.responses(4, train))
    z = [ha.transform_subject(data.responses(s, test), i) for i, s in enumerate((1, 2, 3, 4))]
    # the new subject agrees with the others about as well as they agree with each other
    within = np.mean([_between_subject_r(z[a], z[b]) for a, b in PAIRS])
    new = np.mean([_between_subject_r(z[3], z[b]) for b in range(3)])
    assert within > 0.18 and new > 0.8 * within  # measured (seed 0): 0.25, 0.27


# ---------------------------------------------------------------------- align then decode
def _two_way_identification(P, Y):
    """Fraction of pairs (i, j) with r(p_i, y_i) + r(p_j, y_j) > r(p_i, y_j) + r(p_j, y_i)."""
    Pz = (P - P.mean(1, keepdims=True)) / P.std(1, keepdims=True)
    Yz = (Y - Y.mean(1, keepdims=True)) / Y.std(1, keepdims=True)
    C = Pz @ Yz.T / P.shape[1]
    d = np.diag(C)
    wins = d[:, None] + d[None, :] > C + C.T
    iu = np.triu_indices(len(P), 1)
    return float(wins[iu].mean())


def _mean_target_r(P, Y):
    return float(np.mean([np.corrcoef(P[:, j], Y[:, j])[0, 1] for j in range(Y.shape[1])]))


@pytest.fixture(scope="module")
def decode_setup():
    data = make_multisubject(
        2, n_shared=200, n_unique=300, latent_dim=16, target_dim=32, voxels=(150, 180), seed=0
    )
    ref, new = 1, 2
    tr = data.trials[ref]
    decoder = RidgeCV().fit(tr.X, data.targets[tr.stimulus_ids])  # the reference's decoder
    rng = np.random.default_rng(0)
    calib = np.sort(rng.permutation(data.shared_ids)[:50])  # 25 % of the shared stimuli
    held_out = np.sort(data.trials[new].stimulus_ids[data.trials[new].split == "train"])
    return data, decoder, calib, held_out


@pytest.mark.parametrize("method", ["ridge", "srm"])
def test_alignment_to_reference_beats_scratch_with_25_percent(decode_setup, method):
    data, decoder, calib, held_out = decode_setup
    X_new, X_ref = data.responses(2, calib), data.responses(1, calib)
    X_test, Y_test = data.responses(2, held_out), data.targets[held_out]
    scratch = RidgeCV().fit(X_new, data.targets[calib]).predict(X_test)
    params = {"n_components": 16} if method == "srm" else None
    adapter = FunctionalAlignmentAdapter(decoder, method, params).fit(X_new, X_ref)
    aligned = adapter.predict(X_test)
    assert adapter.transform(X_test).shape == (300, 150)
    r_scratch, r_aligned = _mean_target_r(scratch, Y_test), _mean_target_r(aligned, Y_test)
    id_scratch = _two_way_identification(scratch, Y_test)
    id_aligned = _two_way_identification(aligned, Y_test)
    # measured (seed 0): mean r 0.224 scratch vs 0.254 ridge / 0.297 srm
    assert r_aligned > r_scratch + 0.02
    assert id_aligned > id_scratch
    np.testing.assert_allclose(
        align_then_decode(decoder, X_new, X_ref, X_test, method=method, alignment_params=params),
        aligned,
    )


def test_procrustes_adapter_with_all_shared_stimuli(decode_setup):
    data, decoder, _, held_out = decode_setup
    ids = data.shared_ids
    X_new, X_ref = data.responses(2, ids), data.responses(1, ids)
    X_test, Y_test = data.responses(2, held_out), data.targets[held_out]
    scratch = RidgeCV().fit(X_new, data.targets[ids]).predict(X_test)
    aligned = align_then_decode(decoder, X_new, X_ref, X_test, method="procrustes")
    assert _mean_target_r(aligned, Y_test) > _mean_target_r(scratch, Y_test)


# ---------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path):
    _, _, Xs = _srm_data()
    fitted = [
        ProcrustesAlignment(scaling=True).fit(Xs[0], Xs[1]),
        RidgeAlignment(alphas=[1.0, 10.0]).fit(Xs[0], Xs[1]),
        Hyperalignment(n_components=5).fit(Xs),
        SharedResponseModel(n_components=5, n_iter=3).fit(Xs),
    ]
    for est in fitted:
        path = est.save(tmp_path / f"{type(est).__name__}.safetensors")
        back = type(est).load(path)
        assert back.get_params() == est.get_params()
        if isinstance(est, ProcrustesAlignment | RidgeAlignment):
            np.testing.assert_allclose(back.transform(Xs[0]), est.transform(Xs[0]))
        else:
            for a, b in zip(back.transform(Xs), est.transform(Xs), strict=True):
                np.testing.assert_allclose(a, b)
        assert type(load_alignment(path)) is type(est)
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(BadInputError, match="holds a ProcrustesAlignment, not a RidgeAlignment"):
        RidgeAlignment.load(tmp_path / "ProcrustesAlignment.safetensors")
    (tmp_path / "junk.safetensors").write_text("not a tensor file")
    with pytest.raises(BadInputError, match="is not a saved alignment"):
        load_alignment(tmp_path / "junk.safetensors")
    with pytest.raises(BadInputError, match="does not exist"):
        load_alignment(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------------- bad input
def test_bad_input_messages():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((10, 4)), rng.standard_normal((12, 5))
    with pytest.raises(BadInputError, match="X_source has 10 samples but X_target has 12"):
        ProcrustesAlignment().fit(A, B)
    with pytest.raises(BadInputError, match="X_source must be a 2-D array, got shape"):
        RidgeAlignment().fit(A[0], B[:10])
    with pytest.raises(BadInputError, match="X_target contains 5 non-finite"):
        ProcrustesAlignment().fit(A, np.where(np.eye(10, 5) > 0.5, np.nan, 0)[:, :5] + 0)
    fit = ProcrustesAlignment().fit(A, B[:10])
    with pytest.raises(BadInputError, match="X has 5 voxels but the alignment was fitted on 4"):
        fit.transform(B)
    with pytest.raises(BadInputError, match="Xs must be a list of 2-D arrays"):
        Hyperalignment().fit(A)
    with pytest.raises(BadInputError, match="Xs needs at least 2 subjects, got 1"):
        SharedResponseModel().fit([A])
    with pytest.raises(BadInputError, match=r"same number of samples.*\[10, 12\]"):
        SharedResponseModel(n_components=2).fit([A, B])
    with pytest.raises(BadInputError, match="n_components=5 exceeds the smallest voxel count"):
        SharedResponseModel(n_components=5).fit([A, B[:10]])
    with pytest.raises(BadInputError, match="n_components=4 exceeds n_samples=3"):
        SharedResponseModel(n_components=4).fit([A[:3], B[:3]])
    srm = SharedResponseModel(n_components=2, n_iter=2).fit([A, B[:10]])
    with pytest.raises(BadInputError, match="X_shared_new has 12 samples but the model was"):
        srm.transform_new_subject(B)
    with pytest.raises(BadInputError, match=r"subject must be an index in 0\.\.1"):
        srm.transform_subject(A, 2)
    decoder = RidgeCV().fit(B[:10], rng.standard_normal((10, 3)))
    with pytest.raises(BadInputError, match="'method'.*Did you mean 'procrustes'"):
        FunctionalAlignmentAdapter(decoder, "procrustse").fit(A, B[:10])
    with pytest.raises(BadInputError, match="reference_decoder must be a fitted estimator"):
        FunctionalAlignmentAdapter(object()).fit(A, B[:10])
    with pytest.raises(BadInputError, match="X_reference has 4 voxels but reference_decoder"):
        FunctionalAlignmentAdapter(decoder).fit(B[:10], A)
