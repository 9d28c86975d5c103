"""BOLD5000 adapter on small generated Release 2.0 files, checked against nibabel and scipy."""

from __future__ import annotations

import logging
from collections import Counter

import nibabel as nib
import numpy as np
import pytest
import scipy.stats

from braindecode_suite.datasets import (
    BOLD5000Layout,
    bold5000_stimulus_source,
    load_bold5000,
)
from braindecode_suite.utils.validation import BadInputError

from ._fmri_fixtures import AFFINE, GRID, make_bold5000, save_nifti

SESSION_TRIALS = (74, 37, 74)


@pytest.fixture
def b5(tmp_path):
    root = tmp_path / "bold5000"
    return root, make_bold5000(root, session_trials=SESSION_TRIALS)


def _beta_file(root, s, subject=1, spelling="TYPED"):
    return root / f"CSI{subject}_GLMbetas-{spelling}-FITHRF-GLMDENOISE-RR_ses-{s:02d}.nii.gz"


def _expected(root, mask, sessions):
    """Betas at the mask voxels read with nibabel, sessions concatenated."""
    parts = []
    for s in sessions:
        data = nib.load(_beta_file(root, s)).get_fdata()
        parts.append(data[mask].T)
    return np.concatenate(parts)


def test_values_voxels_and_affine_match_nibabel(b5):
    root, gen = b5
    trials = load_bold5000(root, 1, zscore_sessions=False)
    np.testing.assert_allclose(trials.X, _expected(root, gen["mask"], (1, 2, 3)), rtol=1e-6)
    assert trials.X.dtype == np.float32
    np.testing.assert_array_equal(trials.info["voxel_ijk"], np.argwhere(gen["mask"]))
    np.testing.assert_allclose(trials.info["affine"], AFFINE)
    assert trials.info["grid_shape"] == GRID
    assert trials.info["units"] == "percent signal change"
    assert trials.info["n_nan_voxels_dropped"] == 0


def test_zscore_per_session_matches_scipy(b5):
    root, gen = b5
    trials = load_bold5000(root, 1)  # zscore_sessions=True by default
    raw = _expected(root, gen["mask"], (1, 2, 3))
    bounds = np.cumsum((0,) + SESSION_TRIALS)
    for s in range(3):
        rows = slice(bounds[s], bounds[s + 1])
        np.testing.assert_array_equal(trials.session[rows], s + 1)
        ref = scipy.stats.zscore(raw[rows], axis=0)
        np.testing.assert_allclose(trials.X[rows], ref, atol=2e-5)


def test_stimuli_splits_repeats_runs(b5):
    root, gen = b5
    names = gen["names"]
    trials = load_bold5000(root, 1, zscore_sessions=False)
    stim_names = trials.info["stimulus_names"]
    assert list(stim_names) == sorted(set(names))
    assert list(stim_names[trials.stimulus_ids]) == names
    counts = Counter(names)
    assert sorted(counts.values())[-4:] == [3, 4, 4, 4]
    expected_split = ["test" if counts[n] > 1 else "train" for n in names]
    assert list(trials.split) == expected_split
    seen: Counter = Counter()
    expected_repeat = []
    for n in names:
        expected_repeat.append(seen[n])
        seen[n] += 1
    assert list(trials.repeat) == expected_repeat
    expected_run = [i // 37 + 1 for n in SESSION_TRIALS for i in range(n)]
    assert list(trials.run) == expected_run
    assert set(trials.run[trials.session == 1]) == {1, 2}
    source = dict(zip(stim_names, trials.info["stimulus_source"], strict=True))
    assert source["COCO_train2014_000000000036.jpg"] == "COCO"
    assert source["n01440764_10110.JPEG"] == "ImageNet"
    assert source["airplanecabin1.jpg"] == "Scene"
    assert source["rep_homeoffice7.jpg"] == "Scene"


def test_split_none_is_all_train(b5):
    root, _ = b5
    trials = load_bold5000(root, 1, split=None, zscore_sessions=False)
    assert set(trials.split) == {"train"}


def test_one_session_is_placed_by_offset_and_keeps_global_repeats(b5):
    root, gen = b5
    names = gen["names"]
    trials = load_bold5000(root, 1, sessions=[3], zscore_sessions=False)
    start = SESSION_TRIALS[0] + SESSION_TRIALS[1]
    assert list(trials.info["stimulus_names"][trials.stimulus_ids]) == names[start:]
    np.testing.assert_allclose(trials.X, _expected(root, gen["mask"], (3,)), rtol=1e-6)
    counts = Counter(names)
    assert list(trials.split) == ["test" if counts[n] > 1 else "train" for n in names[start:]]
    assert list(trials.repeat) == [names[:i].count(n) for i, n in enumerate(names) if i >= start]
    np.testing.assert_array_equal(trials.session, 3)
    np.testing.assert_array_equal(trials.run, np.arange(74) // 37 + 1)


def test_roi_is_union_of_hemispheres(b5):
    root, gen = b5
    trials = load_bold5000(root, 1, roi="PPA", zscore_sessions=False)
    union = gen["rois"][("LH", "PPA")] | gen["rois"][("RH", "PPA")]
    np.testing.assert_array_equal(trials.info["voxel_ijk"], np.argwhere(union))
    np.testing.assert_allclose(trials.X, _expected(root, union, (1, 2, 3)), rtol=1e-6)
    assert len(trials.info["files"]["mask"]) == 2


@pytest.mark.parametrize("roi", ["LOC", "RSC"])
def test_csi2_quirk_roi_names_in_subfolder(tmp_path, roi):
    root = tmp_path / "b5"
    gen = make_bold5000(root, 2, session_trials=(37,), subdir="CSI2", quirk_names=True)
    trials = load_bold5000(root, 2, roi=roi, zscore_sessions=False)
    union = gen["rois"][("LH", roi)] | gen["rois"][("RH", roi)]
    np.testing.assert_array_equal(trials.info["voxel_ijk"], np.argwhere(union))
    assert any("RRSC" in f or "LO." in f for f in trials.info["files"]["mask"])


def test_tybeb_spelling_is_found_and_logged(tmp_path, caplog):
    root = tmp_path / "b5"
    make_bold5000(root, session_trials=(37,), spelling="TYBEB")
    layout = BOLD5000Layout(root, 1)
    assert layout.available_sessions() == [1]
    with caplog.at_level(logging.INFO, logger="braindecode_suite"):
        trials = load_bold5000(root, 1, verbose="info")
    assert len(trials) == 37
    assert "TYBEB" in caplog.text


def test_nan_voxel_is_dropped_with_warning(tmp_path, caplog):
    root = tmp_path / "b5"
    gen = make_bold5000(root, session_trials=(37, 37), nan_voxel=(2, 3, 4))
    assert gen["mask"][2, 3, 4]
    with caplog.at_level(logging.WARNING, logger="braindecode_suite"):
        trials = load_bold5000(root, 1)
    assert "NaN" in caplog.text
    assert trials.info["n_nan_voxels_dropped"] == 1
    np.testing.assert_array_equal(trials.info["nan_voxel_ijk"], [[2, 3, 4]])
    assert trials.X.shape[1] == gen["mask"].sum() - 1
    assert np.isfinite(trials.X).all()
    assert not (trials.info["voxel_ijk"] == [2, 3, 4]).all(axis=1).any()


def test_stimulus_source_by_name():
    names = ["COCO_val2014_000000000042.jpg", "n02085620_7.JPEG", "kitchen3.jpg", "n0208_1.jpg"]
    assert list(bold5000_stimulus_source(names)) == ["COCO", "ImageNet", "Scene", "Scene"]


# ----------------------------------------------------------------------------- errors
def test_imgnames_shorter_than_a_session(b5):
    root, gen = b5
    (root / "CSI1_imgnames.txt").write_text("\n".join(gen["names"][:100]))
    with pytest.raises(BadInputError, match=r"Session 2: .* holds 37 trials .* only 26 row"):
        load_bold5000(root, 1)


def test_imgnames_longer_than_all_sessions(b5):
    root, gen = b5
    (root / "CSI1_imgnames.txt").write_text("\n".join(gen["names"] + ["extra.jpg"]))
    with pytest.raises(BadInputError, match=r"hold 185 trials but .* has 186 rows"):
        load_bold5000(root, 1)


def test_mask_grid_mismatch(b5):
    root, _ = b5
    save_nifti(np.ones((5, 6, 8), np.uint8), root / "CSI1_brainmask.nii.gz")
    with pytest.raises(BadInputError, match=r"different grids \(shape differs\).*\(5, 6, 8\)"):
        load_bold5000(root, 1)


def test_mask_affine_mismatch(b5):
    root, gen = b5
    save_nifti(gen["mask"].astype(np.uint8), root / "CSI1_brainmask.nii.gz", np.eye(4))
    with pytest.raises(BadInputError, match=r"different grids \(affine differs\)"):
        load_bold5000(root, 1)


def test_missing_earlier_session(b5):
    root, _ = b5
    _beta_file(root, 1).unlink()
    with pytest.raises(BadInputError, match=r"session\(s\) \[1\] not found .*sessions 1..3"):
        load_bold5000(root, 1, sessions=[3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"roi": "FFA"}, r"'roi' parameter.*'EarlyVis'.*got 'FFA'"),
        ({"split": "official"}, r"'split' parameter.*'repeated_test'.*got 'official'"),
        ({"sessions": [0]}, r"sessions must be >= 1, got 0"),
        ({"sessions": []}, r"sessions is empty"),
        ({"zscore_sessions": "yes"}, r"zscore_sessions must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments(b5, kwargs, match):
    root, _ = b5
    with pytest.raises(BadInputError, match=match):
        load_bold5000(root, 1, **kwargs)


def test_bad_subject_and_missing_files(tmp_path, b5):
    root, _ = b5
    with pytest.raises(BadInputError, match=r"'subject' parameter.*got 5"):
        load_bold5000(root, 5)
    with pytest.raises(BadInputError, match=r"data_dir .* does not exist"):
        load_bold5000(tmp_path / "nowhere", 1)
    with pytest.raises(BadInputError, match=r"No beta files \(CSI2_GLMbetas"):
        load_bold5000(root, 2)
    (root / "sub-CSI1_mask-RHOPA.nii.gz").unlink()
    with pytest.raises(BadInputError, match=r"ROI mask \(RH\) 'sub-CSI1_mask-RHOPA.nii.gz'"):
        load_bold5000(root, 1, roi="OPA")
    (root / "CSI1_imgnames.txt").unlink()
    with pytest.raises(BadInputError, match=r"image list 'CSI1_imgnames.txt' not found"):
        load_bold5000(root, 1)


def test_read_masked_betas_in_small_chunks_matches_nibabel(b5):
    from braindecode_suite.datasets.bold5000 import read_masked_betas

    root, gen = b5
    ijk = np.argwhere(gen["mask"])[::3]
    out = read_masked_betas(_beta_file(root, 1), ijk, chunk=5)  # 74 trials: 15 chunks
    ref = nib.load(_beta_file(root, 1)).get_fdata()[tuple(ijk.T)].T
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert out.dtype == np.float32
