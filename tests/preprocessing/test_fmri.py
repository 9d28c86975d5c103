"""Per-session z-scoring and repeat averaging, against formulas written by hand."""

from __future__ import annotations

import numpy as np
import pytest

from braindecode_suite.datasets import Trials
from braindecode_suite.preprocessing import average_repeats, zscore_per_session
from braindecode_suite.utils.validation import BadInputError


def _trials(seed=0):
    rng = np.random.default_rng(seed)
    session = np.array([2, 1, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 2, 1, 3])  # interleaved
    X = rng.normal(size=(15, 4)) * [1, 3, 5, 7] + [0, 10, -4, 2]
    X[session == 3, 1] = 5.0  # constant within session 3
    ids = np.array([7, 3, 7, 3, 9, 9, 7, 1, 2, 4, 5, 6, 8, 0, 11])
    split = np.where(np.isin(ids, [3, 7, 9]), "test", "train")
    repeat = np.zeros(15, int)
    return Trials(X.astype(np.float32), ids, split, session, repeat, 1, {"dataset": "x"})


def test_zscore_per_session_matches_formula():
    t = _trials()
    out = zscore_per_session(t)
    X = t.X.astype(np.float64)
    for s in (1, 2, 3):
        m = t.session == s
        mu, sd = X[m].mean(0), X[m].std(0, ddof=1)
        ref = np.where(sd > 0, (X[m] - mu) / np.where(sd > 0, sd, 1), 0.0)
        np.testing.assert_allclose(out.X[m], ref, atol=1e-5)
    assert out.X.dtype == np.float32
    np.testing.assert_array_equal(out.X[t.session == 3, 1], 0.0)  # constant voxel -> 0
    assert np.isfinite(out.X).all()
    np.testing.assert_array_equal(out.stimulus_ids, t.stimulus_ids)
    assert out.info["preprocessing"] == ["zscore_per_session"]
    assert "preprocessing" not in t.info  # input untouched


def test_average_repeats_matches_manual_mean():
    t = _trials()
    out = average_repeats(t, split="test")
    test = out.split == "test"
    assert out.stimulus_ids[test].tolist() == [3, 7, 9]  # sorted by id
    for sid in (3, 7, 9):
        manual = t.X[t.stimulus_ids == sid].mean(0)
        np.testing.assert_allclose(out.X[out.stimulus_ids == sid][0], manual, rtol=1e-6)
    train = out.split == "train"
    np.testing.assert_array_equal(out.X[train], t.X[t.split == "train"])
    np.testing.assert_array_equal(out.stimulus_ids[train], t.stimulus_ids[t.split == "train"])
    assert out.info["n_repeats_averaged"]["test"] == {"n_stimuli": 3, "min": 2, "max": 3,
                                                      "mean": pytest.approx(7 / 3)}  # fmt: skip
    assert out.repeat[test].tolist() == [-1, -1, -1]
    assert out.session[out.stimulus_ids == 3].tolist() == [1]  # both repeats in session 1
    assert out.session[out.stimulus_ids == 7].tolist() == [-1]  # sessions 1, 2, 3


def test_average_repeats_all_splits_and_errors():
    t = _trials()
    out = average_repeats(t, split=None)
    assert len(out) == len(np.unique(t.stimulus_ids))
    with pytest.raises(BadInputError, match=r"split='val'.*splits present"):
        average_repeats(t, split="val")
    with pytest.raises(TypeError, match=r"trials must be an instance of Trials"):
        zscore_per_session(np.zeros((3, 2)))
