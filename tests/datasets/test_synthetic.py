"""make_multisubject: layout, determinism, and the forward model checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from braindecode_suite.datasets import MultiSubject, make_multisubject
from braindecode_suite.utils.validation import BadInputError

SMALL = dict(n_shared=20, n_unique=30, latent_dim=6, target_dim=9, voxels=(25, 31, 37))


def test_layout_ids_and_splits():
    data = make_multisubject(3, **SMALL)
    assert isinstance(data, MultiSubject)
    assert data.subjects == [1, 2, 3]
    assert data.targets.shape == (20 + 3 * 30, 9)
    assert data.latents.shape == (110, 6)
    for s, n_vox in zip(data.subjects, (25, 31, 37), strict=True):
        tr = data.trials[s]
        assert tr.X.shape == (50, n_vox) and tr.X.dtype == np.float32
        assert data.mixings[s].shape == (6, n_vox)
        assert set(tr.subject) == {s}
        shared = tr.stimulus_ids < 20
        assert sorted(tr.stimulus_ids[shared]) == list(range(20))
        assert set(tr.split[shared]) == {"test"} and set(tr.split[~shared]) == {"train"}
        unique = sorted(tr.stimulus_ids[~shared])
        assert unique == list(range(20 + (s - 1) * 30, 20 + s * 30))
    # trials are shuffled, and responses() puts rows back in the order asked for
    tr = data.trials[2]
    assert not np.array_equal(tr.stimulus_ids, np.sort(tr.stimulus_ids))
    ids = np.array([5, 3, 60])
    rows = [int(np.flatnonzero(tr.stimulus_ids == i)[0]) for i in ids]
    np.testing.assert_array_equal(data.responses(2, ids), tr.X[rows])
    np.testing.assert_array_equal(data.shared_ids, np.arange(20))
    assert data.info["n_voxels"] == {1: 25, 2: 31, 3: 37}


def test_default_voxel_counts():
    data = make_multisubject(n_shared=5, n_unique=0, latent_dim=3, target_dim=2)
    assert [data.trials[s].X.shape[1] for s in data.subjects] == [300, 350, 400, 450]
    assert make_multisubject(2, n_shared=5, n_unique=0, voxels=7).trials[2].X.shape == (5, 7)


def test_deterministic_for_a_seed():
    a = make_multisubject(2, **{**SMALL, "voxels": 12}, seed=3)
    b = make_multisubject(2, **{**SMALL, "voxels": 12}, seed=3)
    c = make_multisubject(2, **{**SMALL, "voxels": 12}, seed=4)
    np.testing.assert_array_equal(a.trials[2].X, b.trials[2].X)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert not np.allclose(a.trials[2].X, c.trials[2].X)


def test_forward_model_by_hand():
    data = make_multisubject(3, **SMALL, noise=0.5, nonlinearity="tanh", seed=1)
    z = data.latents.astype(np.float64)
    maps = data.info["target_maps"]
    expected = np.tanh(z @ maps["A"]) + ((z @ maps["B"]) ** 2 - 1) / np.sqrt(2)
    np.testing.assert_allclose(data.targets, expected, atol=1e-5)
    for s in data.subjects:
        tr = data.trials[s]
        resid = tr.X - np.tanh(z[tr.stimulus_ids] @ data.mixings[s])
        # what is left is a per-voxel offset (sd 0.5) plus noise (sd 0.5)
        assert abs(resid.mean(0).std() - 0.5) < 0.2
        assert abs((resid - resid.mean(0)).std() - 0.5) < 0.05


def test_linear_noise_free_responses_have_latent_rank():
    data = make_multisubject(3, **SMALL, noise=0.0, nonlinearity="linear")
    X = data.trials[1].X.astype(np.float64)
    assert np.linalg.matrix_rank(X - X.mean(0), tol=1e-3) == 6
    relu = make_multisubject(3, **SMALL, noise=0.0, nonlinearity="relu")
    z = relu.latents[relu.trials[1].stimulus_ids]
    resid = relu.trials[1].X - np.maximum(z @ relu.mixings[1], 0)
    np.testing.assert_allclose(resid, np.broadcast_to(resid[0], resid.shape), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_subjects": 0}, "n_subjects must be >= 1, got 0"),
        ({"n_subjects": 2, "voxels": (10, 20, 30)}, "voxels has 3 entries but n_subjects=2"),
        ({"voxels": "many"}, "voxels must be an int or a sequence of ints"),
        ({"voxels": 0}, "voxels must be >= 1"),
        ({"noise": -1.0}, "noise must be a finite number >= 0, got -1.0"),
        ({"noise": float("nan")}, "noise must be a finite number"),
        ({"nonlinearity": "tahn"}, "'nonlinearity'.*Did you mean 'tanh'"),
        ({"n_unique": -1}, "n_unique must be >= 0"),
        ({"latent_dim": 2.5}, "latent_dim must be an int"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(BadInputError, match=match):
        make_multisubject(**{"n_shared": 4, "n_unique": 2, **kwargs})


def test_responses_bad_input():
    data = make_multisubject(2, **{**SMALL, "voxels": 8})
    with pytest.raises(BadInputError, match=r"subject must be one of \[1, 2\], got 7"):
        data.responses(7, [0])
    with pytest.raises(BadInputError, match=r"subject 1 did not see stimulus id\(s\) \[99\]"):
        data.responses(1, [0, 99])
