"""Motor imagery through MOABB, on MOABB's offline FakeDataset (no download)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("moabb")

from braindecode_suite.datasets import load_moabb_motor_imagery  # noqa: E402
from braindecode_suite.utils.validation import BadInputError  # noqa: E402


def _fake(**kwargs):
    from moabb.datasets.fake import FakeDataset

    params = dict(
        event_list=("left_hand", "right_hand", "feet"),
        n_sessions=2,
        n_runs=1,
        n_subjects=2,
        paradigm="imagery",
        duration=20,
        n_events=9,
        seed=3,
    )
    params.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return FakeDataset(**params)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # moabb's montage name in MNE 1.13
        yield


def test_fake_dataset_matches_moabb_arrays():
    from moabb.paradigms import MotorImagery

    ds = _fake()
    trials = load_moabb_motor_imagery(ds, [1, 2], fmin=8, fmax=30, tmin=0.0, tmax=1.0)
    # independent reference: MOABB's own array interface on the same dataset
    X, y, meta = MotorImagery(fmin=8, fmax=30, tmin=0.0, tmax=1.0).get_data(ds, subjects=[1, 2])
    assert trials.X.shape == X.shape == (len(y), 3, 129)
    assert trials.X.dtype == np.float32
    # MOABB's arrays are in µV (unit_factor 1e6); Trials keep volts
    assert ds.unit_factor == 1e6
    np.testing.assert_allclose(trials.X * 1e6, X, rtol=1e-5, atol=1e-6)
    assert list(trials.info["stimulus_names"]) == ["feet", "left_hand", "right_hand"]
    np.testing.assert_array_equal(trials.info["stimulus_names"][trials.stimulus_ids], y)
    np.testing.assert_array_equal(trials.subject, meta["subject"])
    np.testing.assert_array_equal(trials.session, meta["session"].astype(int) + 1)
    assert trials.info["session_labels"] == ["0", "1"]
    assert set(trials.split) == {"train"}
    assert trials.info["ch_names"] == ["C3", "Cz", "C4"]
    assert trials.info["sfreq"] == 128.0
    assert trials.info["paradigm"]["fmin"] == 8.0


def test_events_subset():
    trials = load_moabb_motor_imagery(
        _fake(n_subjects=1), 1, events=["left_hand", "feet"], tmax=0.5
    )
    assert list(trials.info["stimulus_names"]) == ["feet", "left_hand"]
    assert trials.X.shape[2] == 65


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subjects": [3]}, r"'subjects' parameter.*1, 2.*got 3"),
        ({"subjects": []}, r"subjects is empty"),
        ({"subjects": "1"}, r"subjects must be an int or a list of ints, got '1'"),
        ({"fmin": 30, "fmax": 8}, r"Need 0 <= fmin < fmax, got fmin=30.0 and fmax=8.0"),
        ({"tmin": 1.0, "tmax": 0.5}, r"tmax must be > tmin"),
        ({"events": ["tongue"]}, r"'events' parameter.*got 'tongue'"),
        ({"resample": -1}, r"resample must be a positive rate in Hz, got -1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(BadInputError, match=match):
        load_moabb_motor_imagery(_fake(), **{"subjects": [1], **kwargs})


def test_dataset_name_and_paradigm_checked():
    with pytest.raises(BadInputError, match=r"'dataset' parameter.*Did you mean 'BNCI2014_001'"):
        load_moabb_motor_imagery("BNCI2014_01")
    with pytest.raises(BadInputError, match=r"dataset must be a MOABB dataset name.*got int"):
        load_moabb_motor_imagery(3)
    with pytest.raises(BadInputError, match=r"not a motor-imagery dataset.*paradigm is 'p300'"):
        load_moabb_motor_imagery(_fake(paradigm="p300", event_list=("Target", "NonTarget")), 1)
