"""Haxby 2001 adapters: real subject 1 from ../shared/data and generated subject-2 files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import scipy.signal
import scipy.stats

from braindecode_suite.datasets import (
    HAXBY_CATEGORIES,
    load_haxby,
    load_haxby_openfmri,
    read_haxby_labels,
    read_haxby_openfmri_labels,
)
from braindecode_suite.utils.validation import BadInputError

GRID = (7, 8, 9)  # unequal on purpose
N_PER_RUN = 20
# one run of the generated subject: rest, then 4-volume blocks with rest between them
RUN_LABELS = (["rest"] * 2 + ["face"] * 4 + ["rest"] * 2 + ["house"] * 4 + ["rest"] * 2
              + ["cat"] * 4 + ["rest"] * 2)  # fmt: skip


# ----------------------------------------------------------------------------- real data
@pytest.fixture
def haxby1(shared_data):
    root = shared_data / "haxby2001_sub001"
    if not root.is_dir():
        pytest.skip(f"Haxby subject 1 not found at {root}")
    return root


def test_real_label_counts_match_the_documentation(haxby1):
    labels, chunks = read_haxby_labels(haxby1 / "slice" / "attributes_literal.txt")
    names, counts = np.unique(labels, return_counts=True)
    assert dict(zip(names.tolist(), counts.tolist(), strict=True)) == {
        **{c: 108 for c in HAXBY_CATEGORIES},
        "rest": 588,
    }
    assert np.array_equal(np.unique(chunks), np.arange(12))
    assert (np.bincount(chunks) == 121).all()
    assert nib.load(haxby1 / "slice" / "bold.nii.gz").shape == (40, 20, 1, 1452)


def test_real_openfmri_onsets_give_the_attribute_labels(haxby1):
    labels, chunks = read_haxby_labels(haxby1 / "slice" / "attributes_literal.txt")
    o_labels, o_runs, t_r = read_haxby_openfmri_labels(haxby1 / "openfmri", 1)
    assert t_r == 2.5
    np.testing.assert_array_equal(o_labels, labels)
    np.testing.assert_array_equal(o_runs, chunks + 1)


def test_real_both_layouts_give_the_same_trials(haxby1):
    slice_t = load_haxby(haxby1 / "slice", mask=None)
    open_t = load_haxby_openfmri(haxby1 / "openfmri", 1, bold="bold_1slice", mask=None)
    np.testing.assert_array_equal(open_t.stimulus_ids, slice_t.stimulus_ids)
    np.testing.assert_array_equal(open_t.run, slice_t.run)
    # X against the raw volumes read with nibabel: the non-rest volumes, all 800 voxels
    labels, _ = read_haxby_labels(haxby1 / "slice" / "attributes_literal.txt")
    raw = np.asarray(nib.load(haxby1 / "slice" / "bold.nii.gz").dataobj)
    expected = raw.reshape(-1, raw.shape[-1]).T[labels != "rest"]
    np.testing.assert_array_equal(slice_t.X, expected.astype(np.float32))
    np.testing.assert_array_equal(open_t.X, slice_t.X)
    assert len(slice_t) == 864 and slice_t.info["stimulus_names"] == list(HAXBY_CATEGORIES)


def test_real_openfmri_25mm_mask(haxby1):
    t = load_haxby_openfmri(haxby1 / "openfmri", 1, mask="brain")
    brain = nib.load(haxby1 / "openfmri/sub001/masks/25mm/brain.nii.gz").get_fdata()
    assert t.X.shape == (864, int((brain != 0).sum()))
    assert t.info["t_r"] == 2.5 and t.info["layout"] == "openfmri"


def test_real_leave_one_run_out_decoding_is_far_above_chance(haxby1):
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_score
    from sklearn.svm import LinearSVC

    t = load_haxby(haxby1 / "slice", mask="mask", detrend=True, standardize=True)
    assert t.X.shape == (864, 530)
    scores = cross_val_score(
        LinearSVC(C=0.001), t.X, t.stimulus_ids, groups=t.run, cv=LeaveOneGroupOut()
    )
    # measured: 0.677 (8 categories, chance 0.125)
    assert scores.mean() > 0.5, scores


# ----------------------------------------------------------------------------- generated
def _save(data, path):
    img = nib.Nifti1Image(data, np.diag([3.5, 3.75, 3.75, 1.0]))
    img.set_data_dtype(data.dtype)
    nib.save(img, path)


@pytest.fixture
def subj2(tmp_path):
    """nilearn layout, subject 2: 3 runs × 20 volumes, int16 bold, two masks."""
    folder = tmp_path / "haxby2001" / "subj2"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    n_runs = 3
    bold = rng.integers(500, 1500, size=(*GRID, n_runs * N_PER_RUN)).astype(np.int16)
    _save(bold, folder / "bold.nii.gz")
    vt = np.zeros(GRID, np.uint8)
    vt[2:5, 3:6, 1:3] = 1
    vt[6, 7, 8] = 1
    _save(vt, folder / "mask4_vt.nii.gz")
    face = np.zeros(GRID, np.uint8)
    face[0, 0, :4] = 1
    _save(face, folder / "mask8b_face_vt.nii.gz")
    labels = np.array(RUN_LABELS * n_runs)
    chunks = np.repeat(np.arange(n_runs), N_PER_RUN)
    rows = ["labels chunks"] + [f"{lab} {c}" for lab, c in zip(labels, chunks, strict=True)]
    (folder / "labels.txt").write_text("\n".join(rows) + "\n")
    (folder / "attributes_literal.txt").write_text(
        "\n".join(f"{lab} {c}" for lab, c in zip(labels, chunks, strict=True)) + "\n"
    )
    return tmp_path, bold, vt.astype(bool), labels, chunks


def test_generated_volume_trials(subj2):
    root, bold, vt, labels, chunks = subj2
    t = load_haxby(root, 2)
    keep = labels != "rest"
    expected = bold[vt].T[keep].astype(np.float32)  # (n_volumes, n_voxels) by hand
    np.testing.assert_array_equal(t.X, expected)
    names = t.info["stimulus_names"]
    assert [names[s] for s in t.stimulus_ids] == labels[keep].tolist()
    np.testing.assert_array_equal(t.run, chunks[keep] + 1)
    np.testing.assert_array_equal(t.subject, 2)
    # repeat: how many earlier volumes of the category (12 per category here)
    assert t.repeat[t.stimulus_ids == names.index("house")].tolist() == list(range(12))
    assert t.info["n_voxels"] == vt.sum() == t.X.shape[1]
    np.testing.assert_array_equal(t.info["voxel_ijk"], np.argwhere(vt))
    assert t.info["t_r"] == 2.5


def test_generated_block_trials_and_rest(subj2):
    root, bold, vt, labels, chunks = subj2
    t = load_haxby(root, 2, unit="block")
    assert len(t) == 9  # 3 blocks × 3 runs
    first_face = bold[vt][:, 2:6].mean(axis=1)  # run 0, volumes 2-5
    np.testing.assert_allclose(t.X[0], first_face, rtol=1e-6)
    assert t.info["block_n_volumes"] == [4] * 9
    np.testing.assert_array_equal(t.repeat[t.stimulus_ids == 0], [0, 1, 2])
    with_rest = load_haxby(root, 2, unit="block", include_rest=True)
    assert with_rest.info["stimulus_names"][-1] == "rest"
    assert len(with_rest) == 9 + 4 * 3
    vols = load_haxby(root, 2, include_rest=True)
    assert len(vols) == len(labels)


def test_generated_detrend_standardize_within_runs(subj2):
    root, bold, vt, labels, chunks = subj2
    t = load_haxby(root, 2, detrend=True, standardize=True)
    raw = bold[vt].T.astype(np.float64)
    expected = np.empty_like(raw)
    for run in np.unique(chunks):
        sel = chunks == run
        x = scipy.signal.detrend(raw[sel], axis=0, type="linear")
        expected[sel] = scipy.stats.zscore(x, axis=0, ddof=1)
    np.testing.assert_allclose(t.X, expected[labels != "rest"], atol=1e-4)


def test_generated_label_formats_and_masks(subj2):
    root, bold, vt, labels, chunks = subj2
    a = load_haxby(root, 2, labels="labels.txt")
    b = load_haxby(root, 2, labels="attributes_literal.txt")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.stimulus_ids, b.stimulus_ids)
    np.testing.assert_array_equal(a.run, b.run)
    face = load_haxby(root, 2, mask="mask8b_face_vt")
    assert face.X.shape[1] == 4
    lab, ch = read_haxby_labels(root / "haxby2001/subj2/labels.txt")
    np.testing.assert_array_equal(lab, labels)
    np.testing.assert_array_equal(ch, chunks)


def test_generated_bad_input(subj2, tmp_path):
    root, *_ = subj2
    with pytest.raises(BadInputError, match=r"subject 3 not found.*haxby2001/subj3.*fetch_haxby"):
        load_haxby(root, 3)
    with pytest.raises(BadInputError, match=r"'unit'.*'volume', 'block'.*'trial'"):
        load_haxby(root, 2, unit="trial")
    with pytest.raises(BadInputError, match=r"mask 'mask9'.*mask4_vt.*mask8b_face_vt"):
        load_haxby(root, 2, mask="mask9")
    with pytest.raises(BadInputError, match="standardize must be True or False"):
        load_haxby(root, 2, standardize="zscore")
    short = tmp_path / "short.txt"
    short.write_text("labels chunks\nface 0\n")
    with pytest.raises(BadInputError, match=r"has 1 rows but .* has 60 volumes"):
        load_haxby(root, 2, labels=short)
    broken = tmp_path / "broken.txt"
    broken.write_text("labels chunks\nface 0\nhouse\n")
    with pytest.raises(BadInputError, match=r"row 2 is 'house'.*'<label> <run>'"):
        read_haxby_labels(broken)


def _write_openfmri(root, onsets_per_run, n_vol=12):
    """A tiny OpenfMRI layout: ``onsets_per_run`` = [{cond: [(onset, dur)]}] per run."""
    (root / "models/model001").mkdir(parents=True)
    (root / "models/model001/condition_key.txt").write_text(
        "task001 cond001 house\ntask001 cond002 face\n"
    )
    (root / "scan_key.txt").write_text("TR 2.0\n")
    rng = np.random.default_rng(0)
    for r, onsets in enumerate(onsets_per_run, start=1):
        name = f"task001_run{r:03d}"
        (root / "sub002/BOLD" / name).mkdir(parents=True)
        _save(rng.normal(size=(*GRID, n_vol)).astype(np.float32),
              root / "sub002/BOLD" / name / "bold_25mm.nii.gz")  # fmt: skip
        odir = root / "sub002/model/model001/onsets" / name
        odir.mkdir(parents=True)
        for cond in ("cond001", "cond002"):
            rows = [f"{o}\t{d}\t1" for o, d in onsets.get(cond, [])]
            (odir / f"{cond}.txt").write_text("\n".join(rows) + "\n")


def test_generated_openfmri_onsets(tmp_path):
    _write_openfmri(tmp_path, [{"cond001": [(4.0, 6.0)], "cond002": [(14.0, 4.0)]},
                               {"cond002": [(0.0, 4.0)]}])  # fmt: skip
    labels, runs, t_r = read_haxby_openfmri_labels(tmp_path, 2)
    assert t_r == 2.0
    # TR 2: house covers t = 4, 6, 8 (volumes 2-4); face t = 14, 16 (volumes 7-8)
    run1 = ["rest"] * 2 + ["house"] * 3 + ["rest"] * 2 + ["face"] * 2 + ["rest"] * 3
    run2 = ["face"] * 2 + ["rest"] * 10
    assert labels.tolist() == run1 + run2
    np.testing.assert_array_equal(runs, [1] * 12 + [2] * 12)
    t = load_haxby_openfmri(tmp_path, 2, mask=None, unit="block")
    assert [t.info["stimulus_names"][s] for s in t.stimulus_ids] == ["house", "face", "face"]


def test_generated_openfmri_bad_input(tmp_path):
    _write_openfmri(tmp_path, [{"cond001": [(4.0, 6.0)], "cond002": [(6.0, 4.0)]}])
    with pytest.raises(BadInputError, match=r"falls in blocks of 'house' and 'face'"):
        read_haxby_openfmri_labels(tmp_path, 2)
    with pytest.raises(BadInputError, match=r"sub005.*not found.*sub002"):
        read_haxby_openfmri_labels(tmp_path, 5)
    with pytest.raises(BadInputError, match=r"BOLD file not found.*bold_1slice"):
        read_haxby_openfmri_labels(tmp_path, 2, bold="bold_1slice")
