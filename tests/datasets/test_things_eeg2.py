"""THINGS-EEG2 adapter on small files in the release's own layout and serialisations."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from braindecode_suite.datasets import load_things_eeg2, load_things_eeg2_raw
from braindecode_suite.datasets.things_eeg2 import read_things_eeg2_images
from braindecode_suite.utils.validation import BadInputError

from ._meeg_fixtures import (
    EEG2_N_TEST,
    EEG2_N_TRAIN,
    make_eeg2_image_set,
    make_things_eeg2,
    make_things_eeg2_raw,
    small_things_eeg2_manifest,
)


@pytest.fixture
def small_manifest(tmp_path, monkeypatch):
    folder = small_things_eeg2_manifest(tmp_path / "manifests")
    monkeypatch.setenv("BDS_MANIFEST_DIR", str(folder))
    return folder


@pytest.fixture
def eeg2(tmp_path, small_manifest):
    root = tmp_path / "things_eeg2"
    return root, make_things_eeg2(root, subject=2)


def test_official_release_all_repetitions(eeg2):
    root, ref = eeg2
    trials = load_things_eeg2(root, 2)
    n_train, n_test = EEG2_N_TRAIN * 4, EEG2_N_TEST * 80
    assert trials.X.shape == (n_train + n_test, 17, 100)
    assert trials.X.dtype == np.float32
    # condition-major rows: row c * n_rep + r is condition c, repetition r
    np.testing.assert_array_equal(trials.X[1 * 4 + 3], ref["training"][1, 3].astype(np.float32))
    np.testing.assert_array_equal(
        trials.X[n_train + 2 * 80 + 79], ref["test"][2, 79].astype(np.float32)
    )
    expected_names = ref["images"]["training"] + ref["images"]["test"]
    assert list(trials.info["stimulus_names"]) == expected_names
    # condition i+1 of the training partition is the i-th sorted training image
    assert (
        trials.info["stimulus_names"][trials.stimulus_ids[1 * 4]]
        == sorted(ref["images"]["training"])[1]
    )
    assert trials.info["stimulus_names"][trials.stimulus_ids[n_train]].startswith(
        "test_images/00001_banana/"
    )
    assert list(trials.split[:n_train]) == ["train"] * n_train
    assert list(trials.split[n_train:]) == ["test"] * n_test
    np.testing.assert_array_equal(trials.repeat[:8], [0, 1, 2, 3, 0, 1, 2, 3])
    assert trials.repeat[n_train:].max() == 79
    assert set(trials.subject) == {2} and set(trials.session) == {0}
    assert trials.info["times"].shape == (100,)
    assert trials.info["times"][0] == pytest.approx(-0.2)
    assert trials.info["ch_names"] == ref["ch_names"]
    assert trials.info["stimulus_concepts"][0] == "aardvark"
    assert trials.info["stimulus_concepts"][-1] == "eagle"


def test_average_repetitions_matches_numpy_mean(eeg2):
    root, ref = eeg2
    trials = load_things_eeg2(root, 2, split="test", average_repetitions=True)
    assert trials.X.shape == (EEG2_N_TEST, 17, 100)
    np.testing.assert_allclose(trials.X, ref["test"].mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(trials.stimulus_ids, EEG2_N_TRAIN + np.arange(EEG2_N_TEST))
    assert set(trials.repeat) == {0} and set(trials.split) == {"test"}


def test_250hz_pickle_variant_and_times_gotcha(tmp_path, small_manifest):
    root = tmp_path / "nice"
    ref = make_things_eeg2(root, variant="250hz", partitions=("training",))
    trials = load_things_eeg2(root, 1, variant="250hz", split=["training"])
    assert trials.X.shape == (EEG2_N_TRAIN * 4, 63, 250)
    np.testing.assert_array_equal(trials.X[5], ref["training"][1, 1].astype(np.float32))
    # the file keeps 300 times from -0.2 s for data cropped to 0-1 s: the last 250 apply
    np.testing.assert_allclose(trials.info["times"], ref["times"][50:])
    assert trials.info["times"][0] == pytest.approx(0.0)
    assert trials.info["sfreq"] == 250.0


def test_twenty_test_repetitions_warn(tmp_path, small_manifest, caplog):
    root = tmp_path / "one_session"
    make_things_eeg2(root, test_reps=20, partitions=("test",))
    with caplog.at_level(logging.WARNING, logger="braindecode_suite"):
        trials = load_things_eeg2(root, 1, split="test")
    assert trials.X.shape[0] == EEG2_N_TEST * 20
    assert "20 test repetitions" in caplog.text and "not the 80 of the OSF release" in caplog.text


def test_wrong_repetition_count_names_file_and_expected(tmp_path, small_manifest):
    root = tmp_path / "bad"
    make_things_eeg2(root, test_reps=7, partitions=("test",))
    with pytest.raises(BadInputError, match=r"preprocessed_eeg_test\.npy.*7 repetitions.*has 80"):
        load_things_eeg2(root, 1, split="test")


def test_counts_checked_against_real_manifest(tmp_path):
    # without the small manifest the release's counts apply: the fixture is far too small
    root = tmp_path / "partial"
    make_things_eeg2(root, partitions=("training",))
    with pytest.raises(BadInputError, match=r"holds 6 images but the training partition has 16540"):
        load_things_eeg2(root, 1, split="training")


def test_wrong_condition_count_in_file(tmp_path, monkeypatch):
    root = tmp_path / "cond"
    make_things_eeg2(root, partitions=("training",))
    # manifest says 6 training conditions; delete nothing but claim 7 images by adding one
    folder = small_things_eeg2_manifest(tmp_path / "m", n_train=7)
    monkeypatch.setenv("BDS_MANIFEST_DIR", str(folder))
    extra = root / "image_set" / "training_images" / "00004_zebra"
    extra.mkdir()
    (extra / "zebra_01s.jpg").write_bytes(b"")
    with pytest.raises(BadInputError, match=r"holds 6 image conditions.*has 7 \(expected shape"):
        load_things_eeg2(root, 1, split="training")


def test_variant_mismatch_suggests_other_variant(eeg2):
    root, _ = eeg2
    # official files copied where the 250 Hz variant is looked for
    target = root / "Preprocessed_data_250Hz" / "sub-02"
    target.mkdir(parents=True)
    src = root / "eeg_dataset" / "preprocessed_data" / "sub-02" / "preprocessed_eeg_training.npy"
    (target / src.name).write_bytes(src.read_bytes())
    with pytest.raises(BadInputError, match=r"17 channels × 100 samples.*variant='official'"):
        load_things_eeg2(root, 2, variant="250hz", split="training")


def test_overlapping_concepts_are_refused(tmp_path, small_manifest):
    root = tmp_path / "overlap"
    make_eeg2_image_set(root, test_concepts=("banana", "cat", "dog", "abacus"))
    with pytest.raises(BadInputError, match=r"must be disjoint.*\['abacus'\]"):
        load_things_eeg2(root, 1)


def test_image_table_is_sorted(tmp_path):
    names = make_eeg2_image_set(tmp_path)
    got, concepts = read_things_eeg2_images(tmp_path / "image_set", "training")
    assert list(got) == sorted(names["training"])
    assert list(concepts) == ["aardvark"] * 2 + ["abacus"] * 2 + ["accordion"] * 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variant": "250Hz"}, r"'variant' parameter.*'official', '250hz'.*Did you mean '250hz'"),
        ({"split": "train"}, r"'split' parameter.*'training', 'test'.*got 'train'"),
        ({"split": []}, r"split is empty"),
        ({"subject": 11}, r"'subject' parameter.*got 11"),
        ({"subject": "1"}, r"subject must be an int, got str"),
        ({"average_repetitions": "yes"}, r"average_repetitions must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments(eeg2, kwargs, match):
    root, _ = eeg2
    kwargs = {"subject": 2, **kwargs}
    with pytest.raises(BadInputError, match=match):
        load_things_eeg2(root, **kwargs)


def test_missing_files_say_where_and_how(tmp_path, small_manifest):
    with pytest.raises(BadInputError, match=r"data_dir: .*does not exist.*osf\.io/3jk45"):
        load_things_eeg2(tmp_path / "nowhere", 1)
    root = tmp_path / "imgs_only"
    make_eeg2_image_set(root)
    with pytest.raises(
        BadInputError, match=r"'preprocessed_eeg_training\.npy' of sub-01 not found"
    ):
        load_things_eeg2(root, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match=r"image_dir: .*image_set.*does not exist"):
        load_things_eeg2(tmp_path / "empty", 1)


def test_not_a_dict_file(tmp_path, small_manifest):
    root = tmp_path / "arr"
    make_things_eeg2(root, partitions=("test",))
    np.save(root / "eeg_dataset/preprocessed_data/sub-01/preprocessed_eeg_test.npy", np.zeros(3))
    with pytest.raises(BadInputError, match=r"holds an array of shape \(3,\), expected a dict"):
        load_things_eeg2(root, 1, split="test")


def test_raw_recording_to_mne(tmp_path):
    ref = make_things_eeg2_raw(tmp_path, subject=3, session=2, partition="test")
    raw, events, event_id = load_things_eeg2_raw(tmp_path, 3, 2, "test")
    assert raw.info["sfreq"] == 1000.0
    assert raw.get_channel_types() == ["eeg"] * 4 + ["stim"]
    assert raw.info["highpass"] == pytest.approx(0.01) and raw.info["lowpass"] == 100.0
    np.testing.assert_allclose(raw.get_data(picks="eeg"), ref["eeg"])
    keep = ref["values"] != 99999
    np.testing.assert_array_equal(events[:, 0], ref["onsets"][keep])
    np.testing.assert_array_equal(events[:, 2], ref["values"][keep])
    assert event_id == {"test/00001": 1, "test/00002": 2, "test/00003": 3}


def test_raw_bad_input(tmp_path):
    make_things_eeg2_raw(tmp_path, partition="test")
    with pytest.raises(BadInputError, match=r"'partition' parameter.*got 'train'"):
        load_things_eeg2_raw(tmp_path, 1, 1, "train")
    with pytest.raises(BadInputError, match=r"'session' parameter.*got 5"):
        load_things_eeg2_raw(tmp_path, 1, 5, "test")
    with pytest.raises(
        BadInputError, match=r"'raw_eeg_training\.npy' of sub-01 session 1 not found"
    ):
        load_things_eeg2_raw(tmp_path, 1, 1, "training")
