"""Synthetic M/EEG recordings with a known linear-in-latent evoked signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from braindecode_suite.datasets import Trials, make_synthetic_meeg
from braindecode_suite.datasets.synthetic_meeg import pink_noise
from braindecode_suite.utils.validation import BadInputError


def _small(**kw):
    args = dict(
        n_subjects=2,
        n_concepts_train=12,
        n_concepts_test=5,
        n_reps=3,
        n_channels=7,
        n_times=40,
        sfreq=100.0,
        target_dim=6,
        snr=0.5,
        seed=3,
    )
    args.update(kw)
    return make_synthetic_meeg(**args)


def test_shapes_splits_and_metadata():
    trials, emb = _small()
    assert len(trials) == 2 and emb.shape == (17, 6) and emb.dtype == np.float32
    for s, tr in enumerate(trials):
        assert isinstance(tr, Trials)
        assert tr.X.shape == (17 * 3, 7, 40) and tr.X.dtype == np.float32
        assert set(tr.subject) == {s + 1}
        train = set(tr.stimulus_ids[tr.split == "train"])
        test = set(tr.stimulus_ids[tr.split == "test"])
        assert train == set(range(12)) and test == set(range(12, 17))
        assert not train & test
        np.testing.assert_array_equal(np.bincount(tr.repeat), [17, 17, 17])
        assert tr.info["sfreq"] == 100.0 and len(tr.info["ch_names"]) == 7
        np.testing.assert_allclose(tr.info["times"], -0.1 + np.arange(40) / 100.0)


def test_reproducible_and_seeded():
    a, ea = _small()
    b, eb = _small()
    c, _ = _small(seed=4)
    np.testing.assert_array_equal(a[1].X, b[1].X)
    np.testing.assert_array_equal(ea, eb)
    assert not np.allclose(a[1].X, c[1].X)


def test_forward_model_and_snr_by_hand():
    trials, emb = _small(n_reps=20, n_times=60, snr=2.0)
    z = (emb - emb.mean(0)) / emb.std(0)
    tr = trials[1]
    A, W, M = tr.info["patterns"], tr.info["waveforms"], tr.info["mixing"]
    # clean[c, k, t] = sum_j A[k, j] z[c, j] W[j, t], written as loops over matrices
    clean = np.stack([A @ np.diag(z[c]) @ W for c in range(len(z))])
    signal = np.stack([M @ clean[c] for c in tr.stimulus_ids])
    noise = tr.X - signal
    assert abs(noise.mean()) < 0.05 * noise.std()
    ratio = (clean**2).mean() / noise.var()
    assert ratio == pytest.approx(2.0, rel=0.05)
    # subjects share structure but differ: mixing near the identity, not equal to it
    M0 = trials[0].info["mixing"]
    assert not np.allclose(M0, M) and np.linalg.norm(M - np.eye(7)) < np.linalg.norm(np.eye(7))


def test_given_embeddings_are_used():
    emb = np.random.default_rng(0).standard_normal((17, 3))
    trials, out = _small(embeddings=emb, target_dim=99)
    np.testing.assert_allclose(out, emb.astype(np.float32))
    assert trials[0].info["patterns"].shape == (7, 3)


def test_pink_noise_has_one_over_f_spectrum():
    x = pink_noise(np.random.default_rng(0), (50, 2048))
    np.testing.assert_allclose(x.std(-1), 1.0, rtol=1e-6)
    f, p = welch(x, fs=1.0, nperseg=256)
    keep = (f > 0.01) & (f < 0.4)
    slope = np.polyfit(np.log(f[keep]), np.log(p.mean(0)[keep]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.15)


def test_bad_inputs():
    with pytest.raises(BadInputError, match="n_concepts_test must be >= 2, got 1"):
        _small(n_concepts_test=1)
    with pytest.raises(BadInputError, match="snr must be a number > 0, got 0"):
        _small(snr=0)
    with pytest.raises(BadInputError, match="subject_mixing must be >= 0"):
        _small(subject_mixing=-1.0)
    with pytest.raises(BadInputError, match=r"embeddings must have .* = 17 rows, got \(5, 3\)"):
        _small(embeddings=np.zeros((5, 3)))
