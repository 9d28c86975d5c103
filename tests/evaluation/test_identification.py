"""Zero-shot / segment identification, published references and subject splits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from braindecode_suite.evaluation.identification import (
    PUBLISHED_MEEG,
    cross_subject_splits,
    format_identification,
    identification_ranks,
    segment_identification,
    within_subject_splits,
    zero_shot_identification,
)
from braindecode_suite.utils.validation import BadInputError

# candidates = the 4 basis vectors, so cosine(pred_i, cand_j) = pred_i[j] / |pred_i|
CANDS = np.eye(4)
PRED = np.array(
    [
        [1.0, 0.5, 0.0, 0.0],  # true 0: most similar                -> rank 0
        [0.9, 0.2, 0.5, 0.0],  # true 1: 0 (0.9) and 2 (0.5) above   -> rank 2
        [0.0, 0.0, 1.0, 0.1],  # true 2: most similar                -> rank 0
        [0.3, 0.2, 0.1, 0.05],  # true 3: all three above            -> rank 3
    ]
)


def test_hand_worked_4x4():
    ranks = identification_ranks(PRED, CANDS, np.arange(4))
    np.testing.assert_array_equal(ranks, [0, 2, 0, 3])
    res = zero_shot_identification(PRED, CANDS, np.arange(4), k=(1, 2, 3, 4), n_boot=200)
    assert res["top1"] == 0.5 and res["top2"] == 0.5
    assert res["top3"] == 0.75 and res["top4"] == 1.0
    assert res["chance_top1"] == 0.25 and res["chance_top3"] == 0.75
    assert res["n_candidates"] == 4 and res["n_queries"] == 4
    # scale does not matter (cosine)
    res2 = zero_shot_identification(7.0 * PRED, 3.0 * CANDS, np.arange(4), k=1, n_boot=10)
    assert res2["top1"] == 0.5


def test_matches_sklearn_top_k_on_random_data():
    rng = np.random.default_rng(0)
    cands = rng.standard_normal((50, 8))
    true = rng.integers(0, 50, 120)
    pred = cands[true] + 1.5 * rng.standard_normal((120, 8))
    res = zero_shot_identification(pred, cands, true, k=(1, 5), n_boot=50)
    sim = (pred / np.linalg.norm(pred, axis=1, keepdims=True)) @ (
        cands / np.linalg.norm(cands, axis=1, keepdims=True)
    ).T
    for k in (1, 5):
        ref = top_k_accuracy_score(true, sim, k=k, labels=np.arange(50))
        assert res[f"top{k}"] == pytest.approx(ref)


def test_chance_level_of_random_predictions():
    rng = np.random.default_rng(1)
    cands = rng.standard_normal((200, 16))
    pred = rng.standard_normal((3000, 16))
    true = rng.integers(0, 200, 3000)
    res = zero_shot_identification(pred, cands, true, k=(1, 5), n_boot=100)
    assert res["chance_top1"] == 1 / 200 and res["chance_top5"] == 5 / 200
    assert abs(res["top5"] - 0.025) < 0.01
    assert res["top1"] < 0.015


def test_ties_are_pessimistic():
    res = zero_shot_identification(np.ones((3, 2)), np.ones((3, 2)), [0, 1, 2], k=1, n_boot=10)
    assert res["top1"] == 0.0


def test_bootstrap_interval_matches_normal_approximation():
    rng = np.random.default_rng(2)
    cands = rng.standard_normal((20, 6))
    true = rng.integers(0, 20, 400)
    pred = cands[true] + 1.2 * rng.standard_normal((400, 6))
    res = zero_shot_identification(pred, cands, true, k=1, n_boot=2000, random_state=3)
    p = res["top1"]
    lo, hi = res["top1_ci"]
    half = 1.96 * np.sqrt(p * (1 - p) / 400)
    assert lo < p < hi
    assert lo == pytest.approx(p - half, abs=0.015)
    assert hi == pytest.approx(p + half, abs=0.015)


def test_segment_identification_is_all_vs_all():
    rng = np.random.default_rng(4)
    seg = rng.standard_normal((30, 5))
    pred = seg + 0.8 * rng.standard_normal((30, 5))
    a = segment_identification(pred, seg, k=(1, 10), n_boot=20)
    b = zero_shot_identification(pred, seg, np.arange(30), k=(1, 10), n_boot=20)
    assert a["top1"] == b["top1"] and a["top10"] == b["top10"]
    assert a["chance_top10"] == pytest.approx(10 / 30)


def test_published_reference_is_printed_beside_ours():
    assert PUBLISHED_MEEG["nice_things_eeg2"]["values"] == {"top1": 15.6, "top5": 42.8}
    assert PUBLISHED_MEEG["defossez_gwilliams_meg"]["values"]["top10"] == 70.7
    for ref in PUBLISHED_MEEG.values():
        assert ref["source"] and ref["method"]
    res = zero_shot_identification(
        PRED, CANDS, np.arange(4), k=(1, 4), n_boot=10, published="nice_things_eeg2"
    )
    text = format_identification(res)
    assert "15.6" in text and "NICE" in text and "50.0" in text and "25.00" in text


def test_bad_inputs():
    with pytest.raises(BadInputError, match=r"k must lie in \[1, 4\].*\[5\]"):
        zero_shot_identification(PRED, CANDS, np.arange(4), k=(1, 5))
    with pytest.raises(BadInputError, match="same embedding size, got 4 and 3"):
        zero_shot_identification(PRED, np.eye(3), np.arange(4))
    with pytest.raises(BadInputError, match=r"true_index must lie in \[0, 4\)"):
        zero_shot_identification(PRED, CANDS, [0, 1, 2, 4])
    with pytest.raises(BadInputError, match="true_index must be integer"):
        zero_shot_identification(PRED, CANDS, [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(BadInputError, match="all-zero rows"):
        zero_shot_identification(np.zeros((4, 4)), CANDS, np.arange(4))
    with pytest.raises(BadInputError, match="published"):
        zero_shot_identification(PRED, CANDS, np.arange(4), k=1, published="nope")
    with pytest.raises(BadInputError, match="row-aligned, got 4 and 3"):
        segment_identification(PRED, PRED[:3])


def test_cross_subject_splits_leave_one_out():
    subjects = np.array([1, 1, 2, 3, 3, 3, 2])
    splits = cross_subject_splits(subjects)
    assert [s for s, _, _ in splits] == [1, 2, 3]
    for s, train, test in splits:
        assert set(subjects[test]) == {s} and s not in set(subjects[train])
        assert len(train) + len(test) == len(subjects)
        assert not set(train) & set(test)
    with pytest.raises(BadInputError, match="at least 2 subjects, got \\[1\\]"):
        cross_subject_splits([1, 1])


def test_within_subject_splits_are_disjoint():
    subjects = np.array([1, 1, 1, 2, 2, 2])
    split = np.array(["train", "train", "test", "train", "test", "test"])
    stim = np.array([0, 1, 5, 0, 5, 6])
    out = within_subject_splits(subjects, split, stim)
    assert [(s, tr.tolist(), te.tolist()) for s, tr, te in out] == [
        (1, [0, 1], [2]),
        (2, [3], [4, 5]),
    ]
    with pytest.raises(BadInputError, match="subject 1: 1 stimuli are in both"):
        within_subject_splits(subjects, split, np.array([0, 5, 5, 0, 5, 6]))
    with pytest.raises(BadInputError, match="subject 2 has 3 'train' and 0 'test'"):
        within_subject_splits(subjects, ["train", "train", "test"] + ["train"] * 3)
    with pytest.raises(BadInputError, match="one label per trial"):
        within_subject_splits(subjects, split[:3])
