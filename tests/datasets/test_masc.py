"""MEG-MASC adapter: dict-literal events, BIDS recordings (FIF fixture; real data are KIT
``.con``) and word-onset segments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from braindecode_suite.datasets import (
    list_masc_recordings,
    load_masc,
    masc_word_segments,
    read_masc_events,
)
from braindecode_suite.datasets.masc import normalise_masc_sound
from braindecode_suite.utils.validation import BadInputError

from ._meeg_fixtures import MASC_WORDS, make_masc_bids, write_masc_events


@pytest.fixture(scope="module")
def masc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("masc")
    return root, make_masc_bids(root, subject=3)


def test_read_events_parses_dict_literals(tmp_path):
    events = read_masc_events(write_masc_events(tmp_path / "e_events.tsv"))
    assert list(events["kind"].value_counts().sort_index().items()) == [
        ("phoneme", 10),
        ("sound", 1),
        ("word", 5),
    ]
    words = events[events["kind"] == "word"]
    assert list(words["word"]) == [w for _, w, _ in MASC_WORDS]
    np.testing.assert_allclose(words["onset"], [o for o, _, _ in MASC_WORDS])
    np.testing.assert_allclose(words["start"], [s for _, _, s in MASC_WORDS])
    ph = events[events["kind"] == "phoneme"]
    assert list(ph["phoneme"][:2]) == ["t_B", "a_I"]
    assert list(ph["phoneme_base"][:2]) == ["t", "a"]
    assert list(ph["phoneme_position"][:2]) == ["B", "I"]
    # sound path gotcha: lowercase, drop the middle of three dot-parts
    sound = events[events["kind"] == "sound"].iloc[0]
    assert sound["sound_raw"] == "Stimuli/Audio/LW1.0.WAV"
    assert sound["sound"] == "stimuli/audio/lw1.wav"
    assert set(words["sound"]) == {"stimuli/audio/lw1.wav"}
    assert {"onset", "duration", "value", "sample", "pronounced"} <= set(events.columns)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a/B.1.WAV", "a/b.wav"), ("x/lw1_0.wav", "x/lw1_0.wav"), ("Story.wav", "story.wav")],
)
def test_normalise_sound(raw, expected):
    assert normalise_masc_sound(raw) == expected


def test_bad_trial_type(tmp_path):
    path = tmp_path / "bad_events.tsv"
    pd.DataFrame(
        {"onset": [0.1, 0.2], "trial_type": ["{'kind': 'word'}", "__import__('os')"]}
    ).to_csv(path, sep="\t", index=False)
    with pytest.raises(
        BadInputError,
        match=r"row 2: trial_type \"__import__\('os'\)\" is not a "
        r"Python dict literal",
    ):
        read_masc_events(path)
    pd.DataFrame({"onset": [0.1], "trial_type": ["['word']"]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(BadInputError, match=r"row 1: .* is a list, expected a dict literal"):
        read_masc_events(path)
    pd.DataFrame({"onset": [0.1], "trial_type": ["{'word': 'a'}"]}).to_csv(
        path, sep="\t", index=False
    )
    with pytest.raises(BadInputError, match=r"has no 'kind' key \(keys: \['word'\]\)"):
        read_masc_events(path)
    pd.DataFrame({"onset": [0.1]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(BadInputError, match=r"lacks the column\(s\) \['trial_type'\]"):
        read_masc_events(path)


def test_load_and_segment_words(masc_root):
    root, ref = masc_root
    assert list_masc_recordings(root) == [("03", "0", "0"), ("03", "1", "0")]
    raw, events = load_masc(root, 3, 1, 0)
    assert raw.info["sfreq"] == 100.0
    assert set(events["session"]) == {"1"} and set(events["task"]) == {"0"}
    trials = masc_word_segments(raw, events, tmin=-0.2, tmax=0.5)
    # the last word's window [9.5, 10.2] s does not fit in the 10 s recording
    assert trials.X.shape == (4, 4, 71)
    data = raw.get_data()
    for i, (onset, _, _) in enumerate(MASC_WORDS[:4]):
        start = int(round(onset * 100)) - 20
        np.testing.assert_allclose(trials.X[i], data[:, start : start + 71], rtol=1e-6)
    assert list(trials.info["stimulus_names"]) == ["home", "tara", "was"]
    assert list(trials.info["stimulus_names"][trials.stimulus_ids]) == [
        "tara",
        "was",
        "tara",
        "home",
    ]
    np.testing.assert_array_equal(trials.repeat, [0, 0, 1, 0])
    np.testing.assert_array_equal(trials.session, [1, 1, 1, 1])
    np.testing.assert_array_equal(trials.subject, [3, 3, 3, 3])
    meta = trials.info["word_events"]
    assert list(meta["sound"]) == ["stimuli/audio/lw1.wav"] * 4
    np.testing.assert_allclose(meta["sound_onset"], [s for _, _, s in MASC_WORDS[:4]])
    assert trials.info["times"][0] == pytest.approx(-0.2)


def test_load_masc_bad_input(masc_root):
    root, _ = masc_root
    with pytest.raises(
        BadInputError,
        match=r"sub-03 ses-0 task-2 not found.*\[\('0', '0'\), "
        r"\('1', '0'\)\].*one session only",
    ):
        load_masc(root, 3, 0, 2)
    with pytest.raises(BadInputError, match=r"'session' parameter.*'0', '1'.*got '2'"):
        load_masc(root, 3, 2, 0)
    with pytest.raises(BadInputError, match=r"'task' parameter.*got '4'"):
        load_masc(root, "03", "0", 4)
    with pytest.raises(BadInputError, match=r"bids_root: .*does not exist.*ag3kj"):
        load_masc(root / "nope", 3, 0, 0)


def test_segment_bad_input(masc_root):
    root, _ = masc_root
    raw, events = load_masc(root, 3, 0, 0)
    with pytest.raises(BadInputError, match=r"tmin must be < tmax, got tmin=0.5 and tmax=0.1"):
        masc_word_segments(raw, events, tmin=0.5, tmax=0.1)
    with pytest.raises(BadInputError, match=r"tmax must be a finite number of seconds, got nan"):
        masc_word_segments(raw, events, tmax=float("nan"))
    with pytest.raises(BadInputError, match=r"events lacks the column\(s\) \['word'\]"):
        masc_word_segments(raw, events.drop(columns=["word"]))
    with pytest.raises(BadInputError, match=r"no 'word' event \(kinds: \['phoneme', 'sound'\]\)"):
        masc_word_segments(raw, events[events["kind"] != "word"])
    with pytest.raises(BadInputError, match=r"raw must be an mne Raw object, got ndarray"):
        masc_word_segments(raw.get_data(), events)
