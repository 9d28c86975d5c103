"""mask_images and clean_trials against numpy/scipy selections and formulas written by hand."""

from __future__ import annotations

import logging
import re

import nibabel as nib
import numpy as np
import pytest
import scipy.signal

from braindecode_suite.datasets import Trials
from braindecode_suite.preprocessing import clean_trials, mask_images
from braindecode_suite.utils.validation import BadInputError

GRID = (7, 8, 9)  # unequal on purpose, so axis mix-ups fail
AFFINE = np.array([[3.0, 0, 0, -10], [0, 3.0, 0, -12], [0, 0, 3.0, -8], [0, 0, 0, 1]])


def _data(n_vol=24, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(*GRID, n_vol)) * rng.uniform(1, 3, GRID)[..., None] + 50).astype(
        np.float32
    )


def _mask(seed=1):
    rng = np.random.default_rng(seed)
    mask = rng.random(GRID) < 0.3
    mask[0, 0, 0] = True
    return mask


def _img(data, affine=AFFINE):
    return nib.Nifti1Image(data, affine)


def _mask_img(mask, affine=AFFINE):
    return nib.Nifti1Image(mask.astype(np.uint8), affine)


@pytest.fixture
def bds_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="braindecode_suite")
    return caplog


# ----------------------------------------------------------------------------- maskers
def test_mask_selects_the_voxels_numpy_selects(tmp_path):
    data, mask = _data(), _mask()
    path = tmp_path / "bold.nii.gz"
    nib.save(_img(data), path)
    X, info = mask_images(path, mask=_mask_img(mask))
    np.testing.assert_allclose(X, data[mask].T, rtol=1e-6)
    assert X.dtype == np.float32 and X.shape == (24, mask.sum())
    np.testing.assert_array_equal(info["voxel_ijk"], np.argwhere(mask))
    np.testing.assert_array_equal(info["affine"], AFFINE)
    assert info["masker"] == "NiftiMasker"
    assert info["masker_params"]["mask_img"].startswith("<image shape (7, 8, 9)")
    assert info["nan_voxels_dropped"] == 0 and info["resampled"] is False
    assert info["n_features"] == mask.sum() and info["runs"] == [1]


def test_labels_masker_is_the_parcel_mean():
    data = _data()
    labels = np.zeros(GRID, dtype=np.int16)
    labels[:3, :4] = 2
    labels[3:, 2:6, :5] = 9
    labels[5:, 6:] = 5
    X, info = mask_images(_img(data), labels_img=nib.Nifti1Image(labels, AFFINE))
    assert info["masker"] == "NiftiLabelsMasker" and info["region_ids"] == [2, 5, 9]
    ref = np.stack([data[labels == v].mean(axis=0) for v in (2, 5, 9)], axis=1)
    np.testing.assert_allclose(X, ref, rtol=1e-5)


def test_maps_masker_is_least_squares_on_probabilistic_maps():
    """Two overlapping soft maps (DiFuMo-like): signals are the LS weights of the maps."""
    rng = np.random.default_rng(3)
    ijk = np.indices(GRID).reshape(3, -1).T
    maps = np.stack(
        [np.exp(-((ijk - c) ** 2).sum(1) / 8.0).reshape(GRID) for c in ([2, 2, 3], [4, 5, 5])],
        axis=-1,
    )
    maps[maps < 0.05] = 0  # sparse support, as in real atlases
    time_courses = rng.normal(size=(30, 2))
    data = np.einsum("xyzk,tk->xyzt", maps, time_courses) + 0.1 * rng.normal(size=(*GRID, 30))
    X, info = mask_images(
        _img(data.astype(np.float32)), maps_img=nib.Nifti1Image(maps.astype(np.float32), AFFINE)
    )
    A = maps.reshape(-1, 2)
    ref = np.linalg.lstsq(A, data.reshape(-1, 30), rcond=None)[0].T
    assert info["masker"] == "NiftiMapsMasker" and info["n_maps"] == 2
    np.testing.assert_allclose(X, ref, rtol=1e-4, atol=1e-4)
    assert np.corrcoef(X[:, 0], time_courses[:, 0])[0, 1] > 0.99


# ----------------------------------------------------------------------------- cleaning
def _with_trends(data, runs):
    out = data.copy()
    for r in np.unique(runs):
        t = np.flatnonzero(runs == r)
        out[..., t] += (r * 2.0) * np.linspace(-1, 1, len(t)) + 10 * r
    return out


def test_detrend_and_standardize_per_run_match_scipy():
    runs = np.repeat([1, 2], [10, 14])
    data, mask = _with_trends(_data(), runs), _mask()
    X, info = mask_images(_img(data), mask=_mask_img(mask), runs=runs, detrend=True,
                          standardize=True)  # fmt: skip
    raw = data[mask].T.astype(np.float64)
    for r in (1, 2):
        rows = runs == r
        ref = scipy.signal.detrend(raw[rows], axis=0, type="linear")
        ref /= ref.std(axis=0, ddof=1)
        np.testing.assert_allclose(X[rows], ref, atol=2e-5)
    assert info["clean"]["detrend"] is True and info["clean"]["standardize"] == "zscore_sample"
    assert info["runs"] == [1, 2]


def test_run_images_and_confounds_per_run():
    """A list of run images with one confounds table each: confounds are regressed per run."""
    rng = np.random.default_rng(5)
    mask = _mask()
    runs_data, confs = [], []
    for n in (12, 16):
        conf = rng.normal(size=(n, 2))
        data = _data(n, seed=n) + np.einsum("t,xyz->xyzt", conf[:, 0] * 4, rng.random(GRID))
        runs_data.append(data.astype(np.float32))
        confs.append(conf)
    X, info = mask_images([_img(d) for d in runs_data], mask=_mask_img(mask), confounds=confs)
    assert info["runs"] == [1, 2] and info["clean"]["n_confounds"] == 2
    start = 0
    for data, conf in zip(runs_data, confs, strict=True):
        raw = data[mask].T.astype(np.float64)
        c = conf - conf.mean(axis=0)  # nilearn centres confounds: voxel means are kept
        ref = raw - c @ np.linalg.lstsq(c, raw - raw.mean(0), rcond=None)[0]
        np.testing.assert_allclose(X[start : start + len(raw)], ref, rtol=1e-4, atol=1e-3)
        start += len(raw)


def test_high_pass_removes_slow_drift_keeps_fast_signal():
    t_r, n = 2.0, 120
    t = np.arange(n) * t_r
    fast = np.sin(2 * np.pi * 0.1 * t)
    slow = 5 * np.sin(2 * np.pi * 0.002 * t)
    data = np.zeros((*GRID, n), dtype=np.float32) + (fast + slow).astype(np.float32)
    mask = np.zeros(GRID, bool)
    mask[1, 2, 3] = True
    X, _ = mask_images(_img(data), mask=_mask_img(mask), high_pass=0.01, t_r=t_r)
    inner = slice(20, -20)  # away from filter edges
    assert np.corrcoef(X[inner, 0], fast[inner])[0, 1] > 0.99
    assert np.abs(X[inner, 0] - fast[inner]).max() < 0.2  # the 5-unit drift is gone


def test_clean_trials_keeps_row_order_with_interleaved_runs():
    rng = np.random.default_rng(2)
    session = np.array([1] * 8 + [2] * 8)
    run = np.array([1, 2] * 8)  # runs interleaved in row order (kept in time order per run)
    X = rng.normal(size=(16, 5)) + np.arange(16)[:, None] * 0.5 + run[:, None] * 3
    t = Trials(X.astype(np.float32), np.arange(16), ["train"] * 16, session, np.zeros(16), 1,
               {"dataset": "x"}, run)  # fmt: skip
    out = clean_trials(t, detrend=True, standardize="zscore_sample")
    for s in (1, 2):
        for r in (1, 2):
            rows = (session == s) & (run == r)
            ref = scipy.signal.detrend(X[rows], axis=0)
            ref /= ref.std(axis=0, ddof=1)
            np.testing.assert_allclose(out.X[rows], ref, atol=1e-5)
    np.testing.assert_array_equal(out.stimulus_ids, t.stimulus_ids)
    assert out.info["preprocessing"][-1].startswith("clean_trials(detrend=True")
    assert "preprocessing" not in t.info
    with pytest.raises(BadInputError, match=r"high_pass=0.01 needs the repetition time"):
        clean_trials(t, high_pass=0.01)
    with pytest.raises(BadInputError, match=r"confounds must have one row per time point \(16"):
        clean_trials(t, confounds=np.zeros((15, 2)))


# ----------------------------------------------------------------------------- bad input
def test_affine_mismatch_names_both_grids():
    data, mask = _data(), _mask()
    shifted = AFFINE.copy()
    shifted[0, 3] += 3.0
    with pytest.raises(BadInputError) as err:
        mask_images(_img(data), mask=_mask_img(mask, shifted))
    msg = str(err.value)
    assert re.search(r"imgs \(shape \(7, 8, 9\), affine \[\[ *3\., +0\., +0\., +-10\.\]", msg)
    assert re.search(r"mask \(shape \(7, 8, 9\), affine \[\[ *3\., +0\., +0\., +-7\.\]", msg)
    assert "resample=True" in msg
    small = nib.Nifti1Image(np.ones((7, 8, 8), np.uint8), AFFINE)
    with pytest.raises(BadInputError, match=r"shape \(7, 8, 9\).*shape \(7, 8, 8\)"):
        mask_images(_img(data), mask=small)


def test_resample_true_logs_and_matches_a_whole_voxel_shift(bds_warnings):
    """A mask shifted by exactly one voxel: nearest resampling selects the shifted voxels."""
    data = _data()
    big = np.zeros((8, 8, 9), bool)
    big[3:6, 2:5, 4:7] = True
    shifted = AFFINE.copy()
    shifted[0, 3] -= 3.0  # mask voxel i sits on data voxel i - 1
    X, info = mask_images(_img(data), mask=_mask_img(big, shifted), resample=True)
    expected = np.zeros(GRID, bool)
    expected[2:5, 2:5, 4:7] = True
    np.testing.assert_allclose(X, data[expected].T, rtol=1e-6)
    assert info["resampled"] is True and info["resampling_target"] == "data"
    assert "Resampling: imgs (shape (7, 8, 9)" in bds_warnings.text
    # the other way: the images resampled onto the mask grid (exact at whole-voxel shifts)
    X, info = mask_images(
        _img(data), mask=_mask_img(big, shifted), resample=True, resampling_target="mask"
    )
    np.testing.assert_allclose(X, data[expected].T, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(info["affine"], shifted)


def test_nan_voxels_are_dropped_with_a_warning(bds_warnings):
    data, mask = _data(), _mask()
    bad = np.argwhere(mask)[[0, 5]]
    data[tuple(bad[0])][3] = np.nan
    data[tuple(bad[1])][:] = np.inf
    X, info = mask_images(_img(data), mask=_mask_img(mask), detrend=True)
    keep = mask.copy()
    keep[tuple(bad.T)] = False
    assert X.shape == (24, keep.sum()) and np.isfinite(X).all()
    np.testing.assert_allclose(X, scipy.signal.detrend(data[keep].T.astype(float), axis=0),
                               atol=2e-5)  # fmt: skip
    assert info["nan_voxels_dropped"] == 2
    np.testing.assert_array_equal(info["nan_voxel_ijk"], bad)
    np.testing.assert_array_equal(info["voxel_ijk"], np.argwhere(keep))
    assert "2 voxel(s) of the mask hold NaN/inf" in bds_warnings.text
    labels = np.where(mask, 4, 0).astype(np.int16)
    X, info = mask_images(_img(data), labels_img=nib.Nifti1Image(labels, AFFINE))
    np.testing.assert_allclose(X[:, 0], data[keep].mean(axis=0), rtol=1e-5)
    assert info["nan_voxels_dropped"] == 2


def test_bad_inputs_name_the_argument():
    img, mask = _img(_data()), _mask_img(_mask())
    labels = nib.Nifti1Image(np.ones(GRID, np.int16), AFFINE)
    with pytest.raises(BadInputError, match=r"exactly one of mask, labels_img or maps_img, got "
                                            r"\['labels_img', 'mask'\]"):  # fmt: skip
        mask_images(img, mask=mask, labels_img=labels)
    with pytest.raises(BadInputError, match=r"exactly one.*got none"):
        mask_images(img)
    with pytest.raises(BadInputError, match=r"runs has 5 entries but imgs has 24 volumes"):
        mask_images(img, mask=mask, runs=np.ones(5))
    with pytest.raises(BadInputError, match=r"confounds must have one row per time point \(24"):
        mask_images(img, mask=mask, confounds=np.zeros((20, 1)))
    with pytest.raises(BadInputError, match=r"confounds is a list of 1 but imgs has 2 run"):
        mask_images([img, img], mask=mask, confounds=[np.zeros((24, 1))])
    with pytest.raises(BadInputError, match=r"mask must be binary.*labels_img or maps_img"):
        mask_images(
            img, mask=nib.Nifti1Image((np.arange(504).reshape(GRID) % 3).astype(np.int16), AFFINE)
        )
    with pytest.raises(BadInputError, match=r"high_pass=0.01 needs the repetition time"):
        mask_images(img, mask=mask, high_pass=0.01)
    with pytest.raises(BadInputError, match=r"'standardize'.*got 'zscor'.*Did you mean"):
        mask_images(img, mask=mask, standardize="zscor")
    with pytest.raises(BadInputError, match=r"'resampling_target'.*got 'labels'"):
        mask_images(img, mask=mask, resampling_target="labels")
    with pytest.raises(BadInputError, match=r"imgs must be a NIfTI path or a nibabel image, "
                                            r"got ndarray"):  # fmt: skip
        mask_images(np.zeros((3, 3, 3, 4)), mask=mask)
    with pytest.raises(BadInputError, match=r"imgs: .*missing.nii.gz' does not exist"):
        mask_images("missing.nii.gz", mask=mask)
    with pytest.raises(BadInputError, match=r"mask must be a 3-D image, got shape"):
        mask_images(img, mask=img)
