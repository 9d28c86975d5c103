"""THINGS-fMRI adapter, table and volume forms, on one generated dataset written in both."""

from __future__ import annotations

import logging
from collections import Counter

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from braindecode_suite.datasets import THINGSfMRILayout, load_things_fmri
from braindecode_suite.utils.validation import BadInputError

from ._fmri_fixtures import AFFINE, GRID, make_things_fmri, save_nifti

N_SESSIONS, N_RUNS = 3, 2


@pytest.fixture
def things(tmp_path):
    root = tmp_path / "things"
    return root, make_things_fmri(root, n_sessions=N_SESSIONS, n_runs=N_RUNS)


def _volume_reference(root, gen, ijk):
    """Non-catch betas at ``ijk`` read with nibabel, in session/run/volume order."""
    layout = THINGSfMRILayout(root, 1)
    rows = []
    for s, r, v, _ in gen["trials"]:
        data = nib.load(layout.run_betas(s, r)).get_fdata()
        rows.append(data[tuple(np.asarray(ijk).T)][:, v])
    return np.stack(rows)


def test_volume_form_matches_nibabel(things):
    root, gen = things
    trials = load_things_fmri(root, 1, form="volume")
    ijk = np.argwhere(gen["mask"])
    np.testing.assert_array_equal(trials.info["voxel_ijk"], ijk)
    np.testing.assert_allclose(trials.X, _volume_reference(root, gen, ijk), rtol=1e-6)
    np.testing.assert_allclose(trials.info["affine"], AFFINE)
    assert trials.info["grid_shape"] == GRID
    n_catch = sum(f.startswith("catch") for files in gen["conditions"].values() for f in files)
    assert n_catch == N_SESSIONS * N_RUNS
    assert len(trials) == len(gen["trials"])


def test_table_form_matches_pandas(things):
    root, gen = things
    trials = load_things_fmri(root, 1)
    ref = pd.read_hdf(root / "betas_csv" / "sub-01_ResponseData.h5")
    np.testing.assert_allclose(trials.X, ref.drop(columns="voxel_id").to_numpy().T, rtol=1e-6)
    voxels = gen["voxels"]
    np.testing.assert_array_equal(
        trials.info["voxel_ijk"], voxels[["voxel_x", "voxel_y", "voxel_z"]].to_numpy()
    )
    stim = gen["stim"]
    assert list(trials.split) == list(stim["trial_type"])
    np.testing.assert_array_equal(trials.session, stim["session"])
    np.testing.assert_array_equal(trials.run, stim["run"])
    assert list(trials.info["stimulus_names"][trials.stimulus_ids]) == list(stim["stimulus"])


def test_forms_agree(things):
    root, _ = things
    table = load_things_fmri(root, 1, form="table")
    volume = load_things_fmri(root, 1, form="volume")
    np.testing.assert_allclose(table.X, volume.X, rtol=1e-6)
    for name in ("stimulus_ids", "split", "session", "run", "repeat", "subject"):
        np.testing.assert_array_equal(getattr(table, name), getattr(volume, name), err_msg=name)
    for key in ("voxel_ijk", "stimulus_names", "concept"):
        np.testing.assert_array_equal(table.info[key], volume.info[key], err_msg=key)


def test_split_repeat_concept_by_hand(things):
    root, gen = things
    trials = load_things_fmri(root, 1, form="volume")
    names = [f.split("/")[-1] for *_, f in gen["trials"]]
    sessions_of: dict[str, set] = {}
    for (s, *_), n in zip(gen["trials"], names, strict=True):
        sessions_of.setdefault(n, set()).add(s)
    assert sorted(n for n, ss in sessions_of.items() if len(ss) > 1) == gen["test_images"]
    assert list(trials.split) == ["test" if len(sessions_of[n]) > 1 else "train" for n in names]
    assert Counter(trials.split)["test"] == len(gen["test_images"]) * N_SESSIONS
    assert list(trials.repeat) == [names[:i].count(n) for i, n in enumerate(names)]
    concept = dict(zip(trials.info["stimulus_names"], trials.info["concept"], strict=True))
    assert concept["dog_00s.jpg"] == "dog"
    assert concept["mango_01s.jpg"] == "mango"


@pytest.mark.parametrize("form", ["table", "volume"])
def test_roi_selection(things, form):
    root, gen = things
    voxels = gen["voxels"]
    ijk_all = voxels[["voxel_x", "voxel_y", "voxel_z"]].to_numpy()
    v1 = load_things_fmri(root, 1, form=form, roi="V1")
    np.testing.assert_array_equal(v1.info["voxel_ijk"], ijk_all[voxels["V1"] == 1])
    ffa = load_things_fmri(root, 1, form=form, roi="FFA")  # lFFA | rFFA
    both = (voxels["lFFA"] == 1) | (voxels["rFFA"] == 1)
    np.testing.assert_array_equal(ffa.info["voxel_ijk"], ijk_all[both])
    np.testing.assert_allclose(ffa.X, _volume_reference(root, gen, ijk_all[both]), rtol=1e-6)
    union = load_things_fmri(root, 1, form=form, roi=["V1", "lFFA"])
    assert union.X.shape[1] == int(((voxels["V1"] == 1) | (voxels["lFFA"] == 1)).sum())


@pytest.mark.parametrize("form", ["table", "volume"])
def test_sessions_subset_keeps_global_split_and_repeat(things, form):
    root, _ = things
    full = load_things_fmri(root, 1, form=form)
    part = load_things_fmri(root, 1, form=form, sessions=[2, 3])
    keep = full.session >= 2
    np.testing.assert_allclose(part.X, full.X[keep])
    for name in ("stimulus_ids", "split", "repeat", "run", "session"):
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[keep])
    assert part.repeat[part.split == "test"].min() == 1
    assert part.info["sessions"] == [2, 3]


@pytest.mark.parametrize("form", ["table", "volume"])
def test_zscore_per_session_matches_scipy(things, form):
    root, _ = things
    raw = load_things_fmri(root, 1, form=form)
    z = load_things_fmri(root, 1, form=form, zscore_sessions=True)
    for s in range(1, N_SESSIONS + 1):
        sel = raw.session == s
        np.testing.assert_allclose(z.X[sel], scipy.stats.zscore(raw.X[sel], axis=0), atol=2e-5)


def test_volume_nan_voxel_dropped(tmp_path, caplog):
    root = tmp_path / "things"
    gen = make_things_fmri(root, n_sessions=2, n_runs=1, nan_voxel=(1, 1, 1))
    assert gen["mask"][1, 1, 1]
    with caplog.at_level(logging.WARNING, logger="braindecode_suite"):
        trials = load_things_fmri(root, 1, form="volume")
    assert "NaN" in caplog.text
    np.testing.assert_array_equal(trials.info["nan_voxel_ijk"], [[1, 1, 1]])
    assert trials.X.shape[1] == gen["mask"].sum() - 1 and np.isfinite(trials.X).all()


# ----------------------------------------------------------------------------- errors
def test_table_column_count_mismatch(things):
    root, gen = things
    gen["stim"].iloc[:-1].to_csv(root / "betas_csv/sub-01_StimulusMetadata.csv", index=False)
    n = len(gen["stim"])
    with pytest.raises(BadInputError, match=rf"has {n} trial columns but .* has {n - 1} rows"):
        load_things_fmri(root, 1)


def test_table_missing_metadata_column(things):
    root, gen = things
    gen["stim"].drop(columns="concept").to_csv(
        root / "betas_csv/sub-01_StimulusMetadata.csv", index=False
    )
    with pytest.raises(BadInputError, match=r"lacks the column\(s\) \['concept'\]"):
        load_things_fmri(root, 1)


def test_table_voxel_ids_must_match(things):
    root, gen = things
    voxels = gen["voxels"].copy()
    voxels.loc[0, "voxel_id"] = 1
    voxels.to_csv(root / "betas_csv/sub-01_VoxelMetadata.csv", index=False)
    with pytest.raises(BadInputError, match=r"lists 1 voxel_id\(s\) absent from .*\[1\]"):
        load_things_fmri(root, 1)


def test_conditions_row_count_mismatch(things):
    root, gen = things
    layout = THINGSfMRILayout(root, 1)
    files = gen["conditions"][(2, 1)][:-1]
    pd.DataFrame({"image_filename": files}).to_csv(layout.run_conditions(2, 1), sep="\t")
    n = len(files) + 1
    with pytest.raises(BadInputError, match=rf"has {n - 1} rows but .*run-01_betas.* {n} trial"):
        load_things_fmri(root, 1, form="volume")


def test_volume_mask_grid_mismatch(things):
    root, _ = things
    save_nifti(np.ones((5, 6, 8), np.uint8), THINGSfMRILayout(root, 1).brainmask)
    with pytest.raises(BadInputError, match=r"different grids \(shape differs\)"):
        load_things_fmri(root, 1, form="volume")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"form": "csv"}, r"'form' parameter.*'table', 'volume'.*got 'csv'"),
        ({"roi": "V1d"}, r"roi='V1d' is not a column .*'V1', 'lFFA'.*Did you mean 'V1'"),
        ({"roi": 3}, r"roi must be None, a column name or a list of them, got 3"),
        ({"sessions": [7]}, r"sessions \[7\] not in .*sessions there: \[1, 2, 3\]"),
        ({"sessions": "1"}, r"sessions must be a list of session numbers or None"),
        ({"zscore_sessions": 1}, r"zscore_sessions must be True or False, got 1"),
        ({"subject": 4}, r"'subject' parameter.*got 4"),
    ],
)
def test_bad_arguments(things, kwargs, match):
    root, _ = things
    kwargs = {"subject": 1, **kwargs}
    with pytest.raises(BadInputError, match=match):
        load_things_fmri(root, **kwargs)


def test_missing_files(tmp_path, things):
    root, _ = things
    with pytest.raises(BadInputError, match=r"data_dir .* does not exist"):
        load_things_fmri(tmp_path / "nowhere", 1)
    with pytest.raises(BadInputError, match=r"stimulus metadata not found: .*sub-02_Stimulus"):
        load_things_fmri(root, 2)
    with pytest.raises(BadInputError, match=r"No run beta files .*betas_vol/sub-02"):
        load_things_fmri(root, 2, form="volume")
    with pytest.raises(BadInputError, match=r"sessions \[9\] have no run beta files"):
        load_things_fmri(root, 1, form="volume", sessions=[9])
    THINGSfMRILayout(root, 1).brainmask.unlink()
    with pytest.raises(BadInputError, match=r"brain mask not found: .*space-T1w_brainmask"):
        load_things_fmri(root, 1, form="volume")
