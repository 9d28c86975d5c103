"""lss_betas on BOLD generated from known trial amplitudes, a hand-built GLM, and real Haxby runs."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from nilearn.glm.first_level import glover_hrf, make_first_level_design_matrix

from braindecode_suite.preprocessing import lss_betas, read_events
from braindecode_suite.utils.validation import BadInputError

GRID = (4, 5, 3)  # unequal on purpose
T_R = 2.0
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _simulate(seed=0, n_vol=150, noise=0.3, trial_every=14.0):
    """BOLD = baseline + voxel weight x sum_i amplitude_i (1 s boxcar * Glover HRF) + noise."""
    rng = np.random.default_rng(seed)
    onsets = np.arange(10.0, n_vol * T_R - 30, trial_every)
    onsets += rng.uniform(-2, 2, len(onsets))
    n = len(onsets)
    amps = rng.uniform(0.5, 2.5, n)
    events = pd.DataFrame(
        {
            "onset": onsets,
            "duration": 1.0,
            "trial_type": np.where(np.arange(n) % 2, "house", "face"),
            "stimulus": 100 + np.arange(n) % 5,
        }
    )
    oversampling = 50
    hrf = glover_hrf(T_R, oversampling=oversampling)
    fine_t = np.arange(n_vol * oversampling) * (T_R / oversampling)
    signal = np.zeros(n_vol)
    for onset, amp in zip(onsets, amps, strict=True):
        box = ((fine_t >= onset) & (fine_t < onset + 1.0)).astype(float)
        response = np.convolve(box, hrf)[: len(fine_t)]
        signal += amp * response[::oversampling] / response.max()
    weights = rng.uniform(0.5, 1.5, GRID)
    data = 100 + weights[..., None] * signal + noise * rng.normal(size=(*GRID, n_vol))
    return nib.Nifti1Image(data.astype(np.float32), AFFINE), events, amps


def _mask(shape=GRID):
    return nib.Nifti1Image(np.ones(shape, np.uint8), AFFINE)


@pytest.fixture(scope="module")
def sim():
    return _simulate()


def test_lss_betas_track_the_true_amplitudes(sim):
    img, events, amps = sim
    trials = lss_betas(img, events, t_r=T_R, mask=_mask())
    assert trials.X.shape == (len(events), np.prod(GRID)) and trials.X.dtype == np.float32
    assert np.corrcoef(trials.X.mean(axis=1), amps)[0, 1] > 0.9
    # every voxel, not only the mean: true response = weight x amplitude
    assert np.median([np.corrcoef(trials.X[:, v], amps)[0, 1] for v in range(60)]) > 0.8
    assert trials.info["units"] == "percent signal change"
    assert trials.info["stimulus_names"] == ["face", "house"]
    np.testing.assert_array_equal(trials.stimulus_ids, (events["trial_type"] == "house"))
    np.testing.assert_array_equal(trials.info["onset"], events["onset"])
    assert trials.run.tolist() == [1] * len(events)


@pytest.mark.parametrize("hrf_model", ["glover", "spm"])
def test_one_trial_matches_a_hand_built_least_squares_fit(sim, hrf_model):
    """OLS LSS beta of trial k == numpy lstsq on nilearn's design matrix (percent scaling)."""
    img, events, _ = sim
    rng = np.random.default_rng(4)
    confound = np.cumsum(rng.normal(size=150))  # a motion-like nuisance regressor
    trials = lss_betas(
        img,
        events,
        t_r=T_R,
        mask=_mask(),
        hrf_model=hrf_model,
        noise_model="ols",
        confounds=confound,
        trial_types=["face"],
    )
    k = 4  # the 5th event: a 'face' trial, 3rd face trial in onset order
    lss_events = events[["onset", "duration", "trial_type"]].copy()
    lss_events.loc[k, "trial_type"] = "this_trial"
    frame_times = np.arange(150) * T_R
    design = make_first_level_design_matrix(
        frame_times,
        lss_events,
        hrf_model=hrf_model,
        drift_model="cosine",
        high_pass=0.01,
        add_regs=confound[:, None],
        add_reg_names=["motion"],
    )
    Y = np.asarray(img.dataobj).reshape(-1, 150).T.astype(np.float64)
    Y = 100 * (Y / Y.mean(axis=0) - 1)  # nilearn's mean scaling, by hand
    coef = np.linalg.lstsq(design.to_numpy(), Y, rcond=None)[0]
    ref = coef[list(design.columns).index("this_trial")]
    face_rows = np.flatnonzero(trials.info["trial_type"] == "face")
    assert trials.info["onset"][face_rows[2]] == events["onset"][k]
    np.testing.assert_allclose(trials.X[face_rows[2]], ref, rtol=1e-3, atol=1e-4)
    assert len(trials) == (events["trial_type"] == "face").sum()
    assert trials.info["n_confounds"] == [1]


def test_hrf_choice_changes_the_design_and_the_betas(sim):
    img, events, _ = sim
    glover = lss_betas(img, events.iloc[:6], t_r=T_R, mask=_mask(), noise_model="ols")
    spm = lss_betas(img, events.iloc[:6], t_r=T_R, mask=_mask(), noise_model="ols", hrf_model="spm")
    frame_times = np.arange(150) * T_R
    designs = {
        h: make_first_level_design_matrix(frame_times, events.iloc[:6, :3], hrf_model=h)
        for h in ("glover", "spm")
    }
    assert not np.allclose(designs["glover"]["face"], designs["spm"]["face"], atol=1e-3)
    assert np.abs(glover.X - spm.X).max() > 1e-3
    assert glover.info["hrf_model"] == "glover" and spm.info["hrf_model"] == "spm"
    deriv = lss_betas(img, events.iloc[:6], t_r=T_R, mask=_mask(), noise_model="ols",
                      hrf_model="glover + derivative")  # fmt: skip
    assert deriv.X.shape == glover.X.shape  # derivative columns are nuisance, not returned


def test_runs_stimulus_column_and_trial_metadata(tmp_path):
    imgs, event_paths = [], []
    for r in range(2):
        img, events, _ = _simulate(seed=10 + r, n_vol=60, trial_every=20.0)
        path = tmp_path / f"run{r + 1}_events.tsv"
        events.iloc[::-1].to_csv(path, sep="\t", index=False)  # unsorted rows on disk
        nib.save(img, tmp_path / f"run{r + 1}.nii.gz")
        imgs.append(tmp_path / f"run{r + 1}.nii.gz")
        event_paths.append(path)
    trials = lss_betas(imgs, event_paths, t_r=T_R, mask=_mask(), noise_model="ols",
                       stimulus_column="stimulus", subject=3, session=2)  # fmt: skip
    n1 = len(read_events(event_paths[0]))
    assert trials.run.tolist() == [1] * n1 + [2] * (len(trials) - n1)
    for r in (1, 2):
        assert np.all(np.diff(trials.info["onset"][trials.run == r]) > 0)  # onset order
    expected_ids = 100 + np.concatenate([np.arange(n1) % 5, np.arange(len(trials) - n1) % 5])
    np.testing.assert_array_equal(trials.stimulus_ids, expected_ids)
    first = {}
    for i, s in enumerate(trials.stimulus_ids.tolist()):
        assert trials.repeat[i] == first.setdefault(s, 0)
        first[s] += 1
    assert set(trials.subject) == {3} and set(trials.session) == {2}
    assert "stimulus_names" not in trials.info  # integer stimulus ids are kept as they are


def test_nan_voxels_are_left_out_with_a_warning(sim, caplog):
    caplog.set_level(logging.WARNING, logger="braindecode_suite")
    img, events, _ = sim
    data = np.asarray(img.dataobj).copy()
    data[1, 2, 0, 7] = np.nan
    trials = lss_betas(nib.Nifti1Image(data, AFFINE), events.iloc[:3], t_r=T_R, mask=_mask(),
                       noise_model="ols")  # fmt: skip
    assert trials.X.shape == (3, 59) and np.isfinite(trials.X).all()
    assert trials.info["nan_voxels_dropped"] == 1
    assert [1, 2, 0] not in trials.info["voxel_ijk"].tolist()
    assert "1 mask voxel(s) hold NaN/inf" in caplog.text


def test_bad_inputs_name_the_argument(sim):
    img, events, _ = sim
    mask = _mask()
    with pytest.raises(BadInputError, match=r"events lacks column\(s\) \['trial_type'\]"):
        lss_betas(img, events.drop(columns="trial_type"), t_r=T_R, mask=mask)
    late = events.copy()
    late.loc[3, "onset"] = 301.0
    with pytest.raises(BadInputError, match=r"events row 3 \(onset 301 s.*outside the run: "
                                            r"150 volumes x t_r 2 s = \[0, 300\) s"):  # fmt: skip
        lss_betas(img, late, t_r=T_R, mask=mask)
    with pytest.raises(BadInputError, match=r"events has 1 run\(s\) but bold_imgs has 2"):
        lss_betas([img, img], events, t_r=T_R, mask=mask)
    with pytest.raises(BadInputError, match=r"confounds has 2 run\(s\) but bold_imgs has 1"):
        lss_betas(img, events, t_r=T_R, mask=mask, confounds=[np.zeros(150), np.zeros(150)])
    with pytest.raises(BadInputError, match=r"confounds must have one row per time point"):
        lss_betas(img, events, t_r=T_R, mask=mask, confounds=np.zeros(140))
    shifted = AFFINE.copy()
    shifted[2, 3] = 1.5
    with pytest.raises(BadInputError, match=r"bold_imgs \(shape \(4, 5, 3\).*mask \(shape "
                                            r"\(4, 5, 3\).*Resample the mask"):  # fmt: skip
        lss_betas(img, events, t_r=T_R, mask=nib.Nifti1Image(np.ones(GRID, np.uint8), shifted))
    with pytest.raises(BadInputError, match=r"'hrf_model'.*got 'glovr'.*Did you mean 'glover'"):
        lss_betas(img, events, t_r=T_R, mask=mask, hrf_model="glovr")
    with pytest.raises(BadInputError, match=r"trial_types \['chair'\] do not occur"):
        lss_betas(img, events, t_r=T_R, mask=mask, trial_types=["chair"])
    with pytest.raises(BadInputError, match=r"t_r must be a positive number of seconds, got 0"):
        lss_betas(img, events, t_r=0, mask=mask)
    with pytest.raises(BadInputError, match=r"mask is required"):
        lss_betas(img, events, t_r=T_R, mask=None)
    with pytest.raises(BadInputError, match=r"stimulus_column='image' is not a column"):
        lss_betas(img, events, t_r=T_R, mask=mask, stimulus_column="image")
    neg = events.copy()
    neg.loc[0, "duration"] = -1.0
    with pytest.raises(BadInputError, match=r"events row 0 has duration -1.0"):
        lss_betas(img, neg, t_r=T_R, mask=mask)


# ----------------------------------------------------------------------------- real data
def _haxby_events(root, run: int) -> pd.DataFrame:
    key = [
        ln.split() for ln in (root / "models/model001/condition_key.txt").read_text().split("\n")
    ]
    rows = []
    for _, cond, name in (k for k in key if len(k) == 3):
        path = root / f"sub001/model/model001/onsets/task001_run{run:03d}/{cond}.txt"
        for onset, duration, _ in np.loadtxt(path, ndmin=2):
            rows.append((onset, duration, name))
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def test_real_haxby_face_and_house_betas_differ(shared_data):
    """Haxby subject 1, OpenfMRI runs (bold_1slice, 40x20 voxels at 3.1x3.75 mm, 121 volumes
    each): LSS betas of the face and house blocks of 12 runs differ in many voxels of the
    slice's brain mask. (The 25 mm VT mask is a single voxel: too coarse to test with.)"""
    root = shared_data / "haxby2001_sub001" / "openfmri"
    mask = shared_data / "haxby2001_sub001" / "slice" / "mask.nii.gz"
    if not root.is_dir() or not mask.is_file():
        pytest.skip(f"Haxby OpenfMRI subject 1 not found at {root}")
    runs = range(1, 13)
    bold = [root / f"sub001/BOLD/task001_run{r:03d}/bold_1slice.nii.gz" for r in runs]
    trials = lss_betas(bold, [_haxby_events(root, r) for r in runs], t_r=2.5, mask=mask,
                       noise_model="ols", trial_types=["face", "house"])  # fmt: skip
    tt = trials.info["trial_type"]
    assert trials.X.shape == (24, 530) and (tt == "face").sum() == 12
    face, house = trials.X[tt == "face"], trials.X[tt == "house"]
    p = scipy.stats.ttest_rel(face, house, axis=0).pvalue
    # 530 voxels x p < 0.001 gives ~0.5 by chance; measured: 38
    assert (p < 0.001).sum() >= 10
