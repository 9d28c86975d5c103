"""NSD adapter on hand-written NSD files with known 1-based numbers."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io

from braindecode_suite.datasets import (
    NSDLayout,
    Trials,
    iter_nsd_stimuli,
    load_nsd,
    read_expdesign,
    read_nsd_ncsnr,
    read_nsd_stimuli,
)
from braindecode_suite.datasets.nsd import shared982_mask
from braindecode_suite.utils.validation import BadInputError

GRID = (3, 4, 5)  # unequal on purpose
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])


def _save(data, path, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_data_dtype(data.dtype)
    nib.save(img, path)


def _write_tiny_nsd(root, *, masterordering, subjectim, sharedix, n_per, sessions, subject=2,
                    hdf5=False, seed=0):  # fmt: skip
    """Write a tiny NSD; return {session: int16 betas (X, Y, Z, n_per)}."""
    layout = NSDLayout(root, subject)
    layout.expdesign.parent.mkdir(parents=True)
    scipy.io.savemat(
        layout.expdesign,
        {
            "masterordering": np.asarray(masterordering, float)[None],
            "subjectim": np.asarray(subjectim, float),
            "sharedix": np.asarray(sharedix, float)[None],
        },
    )
    roi = np.full(GRID, -1, np.int16)
    roi[1:, 1:3, :] = 0
    roi[1, 1:3, 1:4] = 1
    roi[2, 2, 4] = 2
    _save(roi, layout.roi("nsdgeneral"))
    rng = np.random.default_rng(seed)
    betas = {}
    for s in sessions:
        b = rng.integers(-3000, 3000, (*GRID, n_per)).astype(np.int16)
        betas[s] = b
        if hdf5:
            layout.betas_dir.mkdir(parents=True, exist_ok=True)
            with h5py.File(layout.betas(s, ".hdf5"), "w") as f:
                f.create_dataset("betas", data=b.transpose(3, 2, 1, 0))  # h5py (n, Z, Y, X)
        else:
            _save(b, layout.betas(s))
    n_img = int(np.max(subjectim))
    layout.stimuli.parent.mkdir(parents=True)
    with h5py.File(layout.stimuli, "w") as f:
        bricks = np.arange(n_img, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 3, 3))
        f.create_dataset("imgBrick", data=bricks.astype(np.uint8))
    return betas, roi > 0


# Hand example: 3 sessions of 4 trials in masterordering (1-based 10k indices);
# 2 shared images; subject 2's subjectim row maps 10k -> 1-based 73k ids.
MASTER = [3, 1, 5, 2, 1, 4, 6, 2, 1, 3, 6, 2]
SUBJECTIM = [[9, 4, 1, 2, 3, 5], [4, 9, 7, 8, 6, 1]]
SHAREDIX = [4, 9]


@pytest.fixture
def tiny(tmp_path):
    root = tmp_path / "nsd"
    betas, mask = _write_tiny_nsd(root, masterordering=MASTER, subjectim=SUBJECTIM,
                                  sharedix=SHAREDIX, n_per=4, sessions=[1, 2])  # fmt: skip
    return root, betas, mask


def test_read_expdesign_zero_based(tiny):
    design = read_expdesign(NSDLayout(tiny[0], 2).expdesign)
    np.testing.assert_array_equal(design["masterordering"], np.array(MASTER) - 1)
    np.testing.assert_array_equal(design["subjectim"], np.array(SUBJECTIM) - 1)
    np.testing.assert_array_equal(design["sharedix"], [3, 8])


def test_load_nsd_hand_ids(tiny):
    root, betas, mask = tiny
    trials = load_nsd(root, subject=2)
    assert isinstance(trials, Trials) and len(trials) == 8
    # session 1: k = 3,1,5,2 -> subj2 73k (1-based) 7,4,6,9; session 2: k = 1,4,6,2 -> 4,8,1,9
    np.testing.assert_array_equal(trials.stimulus_ids, np.array([7, 4, 6, 9, 4, 8, 1, 9]) - 1)
    np.testing.assert_array_equal(trials.session, [1, 1, 1, 1, 2, 2, 2, 2])
    assert trials.split.tolist() == [
        "train",
        "test",
        "train",
        "test",
        "test",
        "train",
        "train",
        "test",
    ]
    np.testing.assert_array_equal(trials.repeat, [0, 0, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(trials.subject, 2)
    assert trials.info["n_voxels"] == int(mask.sum()) == 7
    expected = np.concatenate([betas[1][mask].T, betas[2][mask].T]) / 300
    np.testing.assert_allclose(trials.X, expected.astype(np.float32), rtol=1e-6)
    assert trials.X.dtype == np.float32
    assert trials.info["units"] == "percent signal change"


def test_load_nsd_session_subset_keeps_global_repeat(tiny):
    trials = load_nsd(tiny[0], subject=2, sessions=[2])
    np.testing.assert_array_equal(trials.stimulus_ids, np.array([4, 8, 1, 9]) - 1)
    np.testing.assert_array_equal(trials.repeat, [1, 0, 0, 1])


def test_hdf5_betas_match_nifti(tmp_path):
    kw = dict(masterordering=MASTER, subjectim=SUBJECTIM, sharedix=SHAREDIX, n_per=4,
              sessions=[1, 2])  # fmt: skip
    _write_tiny_nsd(tmp_path / "a", **kw)
    _write_tiny_nsd(tmp_path / "b", hdf5=True, **kw)
    a = load_nsd(tmp_path / "a", subject=2)
    b = load_nsd(tmp_path / "b", subject=2)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.stimulus_ids, b.stimulus_ids)
    assert b.info["files"]["betas"][1].endswith(".hdf5")


def test_shared982_hand_example(tmp_path):
    # 1 trial per session, 39 sessions; shared images k=1,2,3 (1-based). k=3 is shown
    # only in session 39, so it is outside the "sessions 1-37" test set.
    master = [1, 4, 2, *[5 + i % 3 for i in range(34)], 4, 3]
    assert len(master) == 39
    mask = shared982_mask(np.array(master) - 1, 3, n_per_session=1)
    np.testing.assert_array_equal(mask, [True, True, False])
    subjectim = [[10, 11, 12, 1, 2, 3, 4]]
    root = tmp_path / "nsd"
    _write_tiny_nsd(root, masterordering=master, subjectim=subjectim, sharedix=[10, 11, 12],
                    n_per=1, sessions=[1, 3, 38, 39], subject=1)  # fmt: skip
    t1000 = load_nsd(root, subject=1, test_set="shared1000")
    np.testing.assert_array_equal(t1000.stimulus_ids, np.array([10, 11, 1, 12]) - 1)
    assert t1000.split.tolist() == ["test", "test", "train", "test"]
    t982 = load_nsd(root, subject=1, test_set="shared982")
    np.testing.assert_array_equal(t982.stimulus_ids, np.array([10, 11, 1]) - 1)
    assert t982.split.tolist() == ["test", "test", "train"]
    assert t982.info["n_trials_dropped"] == 1 and t982.info["n_test_images"] == 2


def test_read_nsd_stimuli_order(tiny):
    path = NSDLayout(tiny[0], 2).stimuli
    ids = [5, 0, 5, 3, 8]
    imgs = read_nsd_stimuli(path, ids, block=2)
    assert imgs.shape == (5, 2, 3, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(imgs[:, 0, 0, 0], ids)
    blocks = list(iter_nsd_stimuli(path, ids, block=2))
    assert [b[0] for b in blocks] == [slice(0, 2), slice(2, 4), slice(4, 5)]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), imgs)


def test_layout_paths(tmp_path):
    lay = NSDLayout(tmp_path, 3, beta_version="betas_fithrf")
    assert (
        lay.betas(7)
        .as_posix()
        .endswith("nsddata_betas/ppdata/subj03/func1pt8mm/betas_fithrf/betas_session07.nii.gz")
    )
    assert lay.roi().as_posix().endswith("nsddata/ppdata/subj03/func1pt8mm/roi/nsdgeneral.nii.gz")
    assert lay.shared_png(0, 2950).name == "shared0001_nsd02951.png"
    assert lay.available_sessions() == []


# ---- bad inputs -------------------------------------------------------------------------


def test_missing_data_dir(tmp_path):
    with pytest.raises(BadInputError, match=r"does not exist.*Data Access.*--data-dir"):
        load_nsd(tmp_path / "nope")


def test_missing_session_file(tiny):
    with pytest.raises(BadInputError, match=r"session 5 not found.*betas_session05.*\[1, 2\]"):
        load_nsd(tiny[0], subject=2, sessions=[1, 5])


def test_missing_expdesign(tiny):
    NSDLayout(tiny[0], 2).expdesign.unlink()
    with pytest.raises(BadInputError, match=r"nsd_expdesign.mat.*--data-dir"):
        load_nsd(tiny[0], subject=2)


def test_expdesign_missing_variable(tmp_path):
    path = tmp_path / "nsd_expdesign.mat"
    scipy.io.savemat(path, {"masterordering": np.ones((1, 3)), "sharedix": np.ones((1, 2))})
    with pytest.raises(BadInputError, match=r"nsd_expdesign.mat.*lacks the variable 'subjectim'"):
        read_expdesign(path)


def test_roi_shape_mismatch(tiny):
    root = tiny[0]
    roi_path = NSDLayout(root, 2).roi()
    _save(np.ones((3, 4, 6), np.int16), roi_path)
    with pytest.raises(BadInputError, match=r"nsdgeneral.nii.gz.*\(3, 4, 6\).*betas_session01.*\(3, 4, 5\)"):  # fmt: skip
        load_nsd(root, subject=2)


def test_roi_affine_mismatch(tiny):
    root = tiny[0]
    roi_path = NSDLayout(root, 2).roi()
    _save(np.ones(GRID, np.int16), roi_path, affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(BadInputError, match=r"affine differs"):
        load_nsd(root, subject=2)


def test_bad_subject_and_test_set(tiny):
    with pytest.raises(BadInputError, match=r"'subject'.*got 9"):
        load_nsd(tiny[0], subject=9)
    with pytest.raises(BadInputError, match=r"'test_set'.*shared982.*got 'shared100'"):
        load_nsd(tiny[0], subject=2, test_set="shared100")
    with pytest.raises(BadInputError, match=r"'space'"):
        NSDLayout(tiny[0], 1, space="func2mm")


def test_stimulus_id_out_of_range(tiny):
    path = NSDLayout(tiny[0], 2).stimuli
    with pytest.raises(BadInputError, match=r"nsd_stimuli.hdf5.*imgBrick of length 9"):
        read_nsd_stimuli(path, [0, 9])
    with pytest.raises(BadInputError, match=r"out of range"):
        next(iter_nsd_stimuli(path, [-1]))


def test_trials_validation():
    with pytest.raises(BadInputError, match=r"stimulus_ids has 2 entries but X has 3"):
        Trials(np.zeros((3, 2)), [0, 1], ["a"] * 3, [1] * 3, [0] * 3, 1)
    t = Trials(np.arange(6.0).reshape(3, 2), [5, 6, 7], ["train", "test", "test"], [1, 1, 2],
               [0, 0, 1], 1)  # fmt: skip
    sub = t.select(t.split == "test")
    assert len(sub) == 2 and sub.stimulus_ids.tolist() == [6, 7]
    assert t.select([2, 0]).X[:, 0].tolist() == [4.0, 0.0]


def test_nsd_roi_masks_by_hand(tiny):
    from braindecode_suite.datasets import nsd_roi_masks

    root, _, _ = tiny
    trials = load_nsd(root, 2)
    ijk = np.asarray(trials.info["voxel_ijk"])  # nsdgeneral: (1, 1..2, 1..3) and (2, 2, 4)
    layout = NSDLayout(root, 2)
    visual = np.zeros(GRID, np.int16)
    visual[1, 1, 1:4] = 1  # V1v
    visual[1, 2, 1] = 4  # V2d
    visual[1, 2, 2] = 7  # hV4
    _save(visual, layout.roi("prf-visualrois"))
    masks, missing = nsd_roi_masks(root, 2, ijk, rois=["nsdgeneral", "V1", "V2", "V3", "V4",
                                                       "higher_vis", "ventral"])  # fmt: skip
    by_voxel = {tuple(v): k for k, v in enumerate(ijk.tolist())}
    assert masks["nsdgeneral"].all() and len(ijk) == 7
    assert sorted(np.flatnonzero(masks["V1"])) == sorted(by_voxel[(1, 1, z)] for z in (1, 2, 3))
    assert np.flatnonzero(masks["V2"]).tolist() == [by_voxel[(1, 2, 1)]]
    assert np.flatnonzero(masks["V4"]).tolist() == [by_voxel[(1, 2, 2)]]
    # higher_vis = nsdgeneral minus V1-V4: (1, 2, 3) and (2, 2, 4)
    expected = sorted([by_voxel[(1, 2, 3)], by_voxel[(2, 2, 4)]])
    assert np.flatnonzero(masks["higher_vis"]).tolist() == expected
    assert missing["V3"] == "no loaded voxel lies in this region"
    assert "streams.nii.gz" in missing["ventral"] and "does not exist" in missing["ventral"]
    with pytest.raises(BadInputError, match="rois"):
        nsd_roi_masks(root, 2, ijk, rois=["V9"])
    with pytest.raises(BadInputError, match="voxel_ijk"):
        nsd_roi_masks(root, 2, ijk[:, :2])


# ---- ncsnr and fsaverage surface betas --------------------------------------------------

N_VERT = {"lh": 7, "rh": 6}  # unequal on purpose (fsaverage has 163842 per hemisphere)


def _save_mgh(data, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.MGHImage(data, np.eye(4)), path)


def _write_surface(root, *, sessions, n_per=4, subject=2, dtype=np.float32, seed=1):
    """fsaverage betas for the tiny NSD; return {(session, hemi): (V, n_per) betas}."""
    layout = NSDLayout(root, subject, space="fsaverage")
    rng = np.random.default_rng(seed)
    betas = {}
    for s in sessions:
        for h, n in N_VERT.items():
            if dtype == np.int16:
                b = rng.integers(-3000, 3000, (n, n_per)).astype(np.int16)
            else:
                b = rng.normal(0, 2, (n, n_per)).astype(np.float32)
            betas[s, h] = b
            _save_mgh(b[:, None, None, :], layout.surface_betas(s, h))
    return betas


@pytest.fixture
def surface(tiny):
    root = tiny[0]
    betas = _write_surface(root, sessions=[1, 2])
    layout = NSDLayout(root, 2, space="fsaverage")
    rois = {"lh": np.array([0, 2, 0, 1, -1, 0, 3]), "rh": np.array([1, 0, 0, 0, 0, 2])}
    for h, values in rois.items():
        _save_mgh(values.astype(np.int32)[:, None, None], layout.surface_roi("nsdgeneral", h))
    return root, betas


def test_fsaverage_layout_paths(tmp_path):
    lay = NSDLayout(tmp_path, 1, space="fsaverage")
    assert (
        lay.surface_betas(3, "rh")
        .as_posix()
        .endswith(
            "nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR/rh.betas_session03.mgh"
        )
    )
    assert (
        lay.surface_roi("streams", "lh")
        .as_posix()
        .endswith("nsddata/freesurfer/fsaverage/label/lh.streams.mgz")
    )
    assert lay.ncsnr("lh").name == "lh.ncsnr.mgh"
    assert (
        NSDLayout(tmp_path, 1)
        .ncsnr()
        .as_posix()
        .endswith("subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/ncsnr.nii.gz")
    )
    with pytest.raises(BadInputError, match=r"'hemi'.*got 'left'"):
        lay.surface_betas(1, "left")


def test_fsaverage_available_sessions_need_both_hemispheres(tiny):
    root = tiny[0]
    _write_surface(root, sessions=[1, 2])
    layout = NSDLayout(root, 2, space="fsaverage")
    layout.surface_betas(2, "rh").unlink()
    assert layout.available_sessions() == [1]


def test_load_nsd_fsaverage_roi(surface):
    root, betas = surface
    trials = load_nsd(root, subject=2, space="fsaverage")
    # ROI > 0: lh vertices 1, 3, 6; rh vertices 0, 5 (rh offset by the 7 lh vertices)
    np.testing.assert_array_equal(trials.info["vertex_index"], [1, 3, 6, 7, 12])
    assert trials.info["hemisphere"].tolist() == ["lh", "lh", "lh", "rh", "rh"]
    assert trials.info["n_vertices_per_hemisphere"] == N_VERT
    assert trials.info["beta_scale"] == 1.0 and "voxel_ijk" not in trials.info
    expected = np.concatenate(
        [np.concatenate([betas[s, "lh"][[1, 3, 6]], betas[s, "rh"][[0, 5]]]).T for s in (1, 2)]
    )
    np.testing.assert_array_equal(trials.X, expected)  # float PSC: no /300
    # same trial -> stimulus mapping as the volume hand example
    np.testing.assert_array_equal(trials.stimulus_ids, np.array([7, 4, 6, 9, 4, 8, 1, 9]) - 1)
    assert trials.info["files"]["betas"][2]["rh"].endswith("rh.betas_session02.mgh")


def test_load_nsd_fsaverage_all_vertices_int16(tiny):
    root = tiny[0]
    betas = _write_surface(root, sessions=[2], dtype=np.int16)
    trials = load_nsd(root, subject=2, space="fsaverage", roi=None, sessions=[2])
    assert trials.X.shape == (4, 13) and trials.info["files"]["roi"] is None
    expected = np.concatenate([betas[2, "lh"], betas[2, "rh"]]).T / 300
    np.testing.assert_allclose(trials.X, expected, rtol=1e-6)
    assert trials.info["beta_scale"] == 300.0


def test_read_nsd_ncsnr_volume(tiny):
    from braindecode_suite.models import compute_noise_ceiling

    root, _, mask = tiny
    ncsnr = np.random.default_rng(3).uniform(0, 2, GRID).astype(np.float32)
    _save(ncsnr, NSDLayout(root, 2).ncsnr())
    trials = load_nsd(root, subject=2)
    got = read_nsd_ncsnr(root, 2, trials.info["voxel_ijk"])
    assert got.dtype == np.float64 and got.shape == (7,)
    np.testing.assert_array_equal(got, ncsnr[mask])  # argwhere order = C order of mask
    nc = compute_noise_ceiling(got, 3)
    np.testing.assert_allclose(nc, 100 * got**2 / (got**2 + 1 / 3))


def test_read_nsd_ncsnr_fsaverage(surface):
    root, _ = surface
    layout = NSDLayout(root, 2, space="fsaverage")
    maps = {h: np.arange(n, dtype=np.float32) / 10 + (h == "rh") for h, n in N_VERT.items()}
    for h, m in maps.items():
        _save_mgh(m[:, None, None], layout.ncsnr(h))
    trials = load_nsd(root, subject=2, space="fsaverage")
    got = read_nsd_ncsnr(root, 2, trials.info["vertex_index"], space="fsaverage")
    np.testing.assert_allclose(got, [0.1, 0.3, 0.6, 1.0, 1.5], rtol=1e-6)
    with pytest.raises(BadInputError, match=r"outside \[0, 12\].*lh 7 \+ rh 6"):
        read_nsd_ncsnr(root, 2, [0, 13], space="fsaverage")
    with pytest.raises(BadInputError, match=r"1-D integer array.*vertex_index"):
        read_nsd_ncsnr(root, 2, np.zeros((2, 3), int), space="fsaverage")


def test_read_nsd_ncsnr_bad_inputs(tiny):
    root = tiny[0]
    with pytest.raises(BadInputError, match=r"ncsnr not found.*subj02/func1pt8mm/.*ncsnr.nii.gz"):
        read_nsd_ncsnr(root, 2, np.zeros((1, 3), int))
    _save(np.ones(GRID, np.float32), NSDLayout(root, 2).ncsnr())
    with pytest.raises(BadInputError, match=r"voxel_ijk must be an integer array.*\(4, 2\)"):
        read_nsd_ncsnr(root, 2, np.zeros((4, 2), int))
    with pytest.raises(BadInputError, match=r"does not fit.*\(3, 4, 5\).*\[0, 0, 5\]"):
        read_nsd_ncsnr(root, 2, [[0, 0, 5]])


def test_fsaverage_bad_inputs(surface):
    root, _ = surface
    layout = NSDLayout(root, 2, space="fsaverage")
    with pytest.raises(BadInputError, match=r"roi must be.*or None with space='fsaverage'"):
        load_nsd(root, subject=2, roi=None)
    with pytest.raises(BadInputError, match=r"surface ROI 'streams' not found.*lh.streams.mgz"):
        load_nsd(root, subject=2, space="fsaverage", roi="streams")
    _save_mgh(np.ones((5, 1, 1), np.int32), layout.surface_roi("short", "lh"))
    _save_mgh(np.ones((6, 1, 1), np.int32), layout.surface_roi("short", "rh"))
    with pytest.raises(BadInputError, match=r"lh.short.mgz.*has 5 vertices.*lh betas.*have 7"):
        load_nsd(root, subject=2, space="fsaverage", roi="short")
    layout.surface_betas(2, "rh").unlink()
    with pytest.raises(BadInputError, match=r"session 2 not found.*rh.betas_session02.mgh.*\[1\]"):
        load_nsd(root, subject=2, space="fsaverage", sessions=[1, 2])
    _save_mgh(np.zeros((6, 1, 1, 3), np.float32), layout.surface_betas(2, "rh"))
    with pytest.raises(BadInputError, match=r"disagree on the number of trials.*session 2 rh': 3"):
        load_nsd(root, subject=2, space="fsaverage")
    _save_mgh(np.zeros((6, 2, 1, 4), np.float32), layout.surface_betas(2, "rh"))
    with pytest.raises(
        BadInputError, match=r"shape \(n_vertices, 1, 1, n_trials\).*\(6, 2, 1, 4\)"
    ):
        load_nsd(root, subject=2, space="fsaverage")
    with pytest.raises(BadInputError, match=r"fsaverage.*not supported by nsd_roi_masks"):
        from braindecode_suite.datasets import nsd_roi_masks

        nsd_roi_masks(root, 2, np.zeros((1, 3), int), space="fsaverage")
