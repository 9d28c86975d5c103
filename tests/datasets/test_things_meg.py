"""THINGS-MEG adapter: preprocessed epochs with THINGS-data metadata, and raw BIDS runs.

The BIDS fixture is FIF written by mne-bids: the real recordings are CTF ``.ds`` folders,
which MNE can read but not write.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from braindecode_suite.datasets import MEGRun, load_things_meg, read_things_meg_events
from braindecode_suite.utils.validation import BadInputError

from ._meeg_fixtures import make_things_meg_bids, make_things_meg_epochs


@pytest.fixture(scope="module")
def meg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("things_meg")
    epochs = make_things_meg_epochs(root, subject=2)
    bids = make_things_meg_bids(root, subject=2)
    return root, epochs, bids


def test_derivatives_to_trials(meg_root):
    root, ref, _ = meg_root
    trials = load_things_meg(root, 2)
    meta = ref["metadata"]
    keep = (meta["trial_type"] != "catch").to_numpy()
    assert trials.X.shape == (keep.sum(), 5, 21)
    assert trials.X.dtype == np.float32
    # Epochs.save writes single precision by default: compare within float32 precision
    np.testing.assert_allclose(trials.X, ref["data"][keep], rtol=1e-6, atol=1e-20)
    kept = meta[keep].reset_index(drop=True)
    np.testing.assert_array_equal(
        trials.info["stimulus_names"][trials.stimulus_ids], kept["image_path"].to_numpy(dtype=str)
    )
    np.testing.assert_array_equal(
        trials.split, np.where(kept["trial_type"] == "test", "test", "train")
    )
    np.testing.assert_array_equal(trials.session, kept["session_nr"])
    np.testing.assert_array_equal(trials.run, kept["run_nr"])
    # each test image is shown once per run (4 runs): repeats 0..3; exp images once
    bird = trials.info["stimulus_names"][trials.stimulus_ids] == "images_test_meg/bird/bird_01b.jpg"
    np.testing.assert_array_equal(trials.repeat[bird], [0, 1, 2, 3])
    assert set(trials.repeat[trials.split == "train"]) == {0}
    assert trials.info["n_catch_dropped"] == 4
    assert trials.info["sfreq"] == 200.0
    assert trials.info["ch_names"] == ref["ch_names"]
    names = list(trials.info["stimulus_names"])
    assert (
        trials.info["stimulus_category_nr"][names.index("images_test_meg/cake/cake_02s.jpg")] == 2
    )
    assert (
        trials.info["stimulus_concepts"][names.index("images_test_meg/cake/cake_02s.jpg")] == "cake"
    )
    assert "images_catch_meg/catch_01.jpg" not in names


def test_bids_runs_and_events(meg_root):
    root, _, ref = meg_root
    runs = load_things_meg(root, 2, source="bids")
    assert [(r.session, r.run) for r in runs] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(isinstance(r, MEGRun) for r in runs)
    first = runs[0]
    assert first.raw.info["sfreq"] == 120.0
    np.testing.assert_array_equal(first.events[:, 0], ref[(1, 1)]["sample"])
    np.testing.assert_array_equal(first.events[:, 2], [18, 999999, 4001, 22])
    only2 = load_things_meg(root, 2, source="bids", sessions=[2])
    assert [(r.session, r.run) for r in only2] == [(2, 1), (2, 2)]
    np.testing.assert_array_equal(only2[0].events[:, 2], [19, 999999, 4001, 22])


def test_read_events_table(tmp_path):
    path = tmp_path / "x_events.tsv"
    pd.DataFrame({"onset": [1.0, 2.0], "sample": [1200, 2400], "value": ["n/a", 7]}).to_csv(
        path, sep="\t", index=False
    )
    np.testing.assert_array_equal(read_things_meg_events(path), [[1200, 0, 999999], [2400, 0, 7]])
    pd.DataFrame({"onset": [1.0], "value": [3]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(BadInputError, match=r"lacks the column\(s\) \['sample'\]"):
        read_things_meg_events(path)


def test_bad_input(meg_root, tmp_path):
    root, _, _ = meg_root
    with pytest.raises(BadInputError, match=r"'source' parameter.*got 'raw'"):
        load_things_meg(root, 2, source="raw")
    with pytest.raises(BadInputError, match=r"'subject' parameter.*got 5"):
        load_things_meg(root, 5)
    with pytest.raises(BadInputError, match=r"preprocessed_P1-epo\.fif' not found.*ds004212"):
        load_things_meg(root, 1)
    with pytest.raises(BadInputError, match=r"No MEG recording \(sub-BIGMEG3"):
        load_things_meg(root, 3, source="bids")
    with pytest.raises(BadInputError, match=r"sessions \[7\] of sub-BIGMEG2 not found.*\[1, 2\]"):
        load_things_meg(root, 2, source="bids", sessions=[7])
    with pytest.raises(BadInputError, match=r"sessions applies to source='bids' only"):
        load_things_meg(root, 2, sessions=[1])


def test_metadata_without_columns(tmp_path):
    import mne

    info = mne.create_info(["MLC11"], 200.0, "mag")
    epochs = mne.EpochsArray(
        np.zeros((2, 1, 5)),
        info,
        verbose=False,
        metadata=pd.DataFrame({"trial_type": ["exp", "test"]}),
    )
    folder = tmp_path / "derivatives" / "preprocessed"
    folder.mkdir(parents=True)
    epochs.save(folder / "preprocessed_P1-epo.fif", verbose=False)
    with pytest.raises(BadInputError, match=r"lacks the column\(s\) \['session_nr', 'run_nr'"):
        load_things_meg(tmp_path, 1)
