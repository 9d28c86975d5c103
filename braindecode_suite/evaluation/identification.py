"""Zero-shot and segment identification for M/EEG decoders, and their subject splits.

- :func:`zero_shot_identification` — each predicted embedding ranks all candidate
  embeddings by cosine similarity; top-k accuracy is the share of queries whose true
  candidate is among the k most similar (THINGS-EEG2: 200 test concepts, chance k/200).
- :func:`segment_identification` — the same with the candidates being the true latents of
  all test segments (Défossez et al. 2023: top-10 among the test segments).
- :func:`cross_subject_splits` (leave one subject out) and :func:`within_subject_splits`
  (each subject's own train/test trials), both checked for disjointness.

Ranks are pessimistic for ties: a candidate whose similarity equals the true one's counts as
ranked above it, so a constant prediction scores 0, not 1. Each accuracy comes with a
percentile bootstrap interval over queries, the chance level, and the published numbers of
:data:`PUBLISHED_MEEG` for the setting, which :func:`format_identification` prints beside
ours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..utils.logging import logger
from ..utils.validation import BadInputError, check_array, check_option
from .metrics import bootstrap_ci

__all__ = [
    "PUBLISHED_MEEG",
    "cross_subject_splits",
    "format_identification",
    "identification_ranks",
    "segment_identification",
    "within_subject_splits",
    "zero_shot_identification",
]

#: Published identification accuracies (%), with where they come from. ``values`` keys are
#: ``top1``, ``top5``, ``top10``; ``n_way`` is the size of the candidate set.
PUBLISHED_MEEG: dict[str, dict] = {
    "nice_things_eeg2": {
        "method": "NICE (Song et al., ICLR 2024)",
        "dataset": "THINGS-EEG2",
        "setting": "within-subject",
        "n_way": 200,
        "values": {"top1": 15.6, "top5": 42.8},
        "source": "Song et al. 2024, 'Decoding natural images from EEG for object recognition', "
        "Table 1: 200-way zero-shot, mean over 10 subjects, test repetitions averaged.",
    },
    "atm_things_eeg2": {
        "method": "ATM-S (Li et al., NeurIPS 2024)",
        "dataset": "THINGS-EEG2",
        "setting": "within-subject",
        "n_way": 200,
        "values": {"top1": 26.9, "top5": 54.8},
        "source": "Li et al. 2024, 'Visual decoding and reconstruction via EEG embeddings "
        "with guided diffusion': 200-way zero-shot, mean over subjects (approximate, as "
        "quoted in issue 7).",
    },
    "defossez_gwilliams_meg": {
        "method": "Défossez et al. (Nat. Mach. Intell. 2023)",
        "dataset": "Gwilliams MEG (MEG-MASC)",
        "setting": "cross-subject model (subject layers), test segments",
        "n_way": None,
        "values": {"top10": 70.7},
        "source": "Défossez et al. 2023, 'Decoding speech perception from non-invasive brain "
        "recordings': top-10 segment identification of 3-s segments among the test "
        "segments (>1,000 candidates), wav2vec 2.0 targets.",
    },
}


def _check_ks(k, n: int) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, int | np.integer) and not isinstance(k, bool) else tuple(k)
    if not ks or any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in ks):
        raise BadInputError(f"k must be a positive int or a tuple of them, got {k!r}.")
    bad = [int(v) for v in ks if not 1 <= v <= n]
    if bad:
        raise BadInputError(f"k must lie in [1, {n}] (the number of candidates), got {bad}.")
    return tuple(int(v) for v in ks)


def _unit(a: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if (norms == 0).any():
        raise BadInputError(
            f"{name} has {int((norms == 0).sum())} all-zero rows; cosine similarity needs "
            "non-zero vectors."
        )
    return a / norms


def identification_ranks(pred, candidates, true_index) -> np.ndarray:
    """0-based rank of each query's true candidate by cosine similarity (ties count above).

    Parameters
    ----------
    pred : ndarray of shape (n_queries, dim)
    candidates : ndarray of shape (n_candidates, dim)
    true_index : array-like of int, shape (n_queries,)
        Row of ``candidates`` that each query should identify.

    Returns
    -------
    ranks : ndarray of int64, shape (n_queries,)
    """
    pred = check_array("pred", pred, ndim=2).astype(np.float64)
    candidates = check_array("candidates", candidates, ndim=2).astype(np.float64)
    if pred.shape[1] != candidates.shape[1]:
        raise BadInputError(
            f"pred and candidates must have the same embedding size, got {pred.shape[1]} "
            f"and {candidates.shape[1]}."
        )
    true_index = np.asarray(true_index)
    if true_index.shape != (len(pred),) or true_index.dtype.kind not in "iu":
        raise BadInputError(
            f"true_index must be integer rows of candidates, shape ({len(pred)},), got "
            f"{true_index.dtype} of shape {true_index.shape}."
        )
    if ((true_index < 0) | (true_index >= len(candidates))).any():
        raise BadInputError(
            f"true_index must lie in [0, {len(candidates)}) (rows of candidates), got values "
            f"from {true_index.min()} to {true_index.max()}."
        )
    sim = _unit(pred, "pred") @ _unit(candidates, "candidates").T
    true_sim = sim[np.arange(len(pred)), true_index]
    others = sim >= true_sim[:, None] - 1e-12
    others[np.arange(len(pred)), true_index] = False
    return others.sum(axis=1).astype(np.int64)


def _summarise(ranks, n: int, ks, *, n_boot, ci, random_state, published) -> dict:
    res: dict = {"n_candidates": int(n), "n_queries": int(len(ranks)), "ranks": ranks}
    for k in ks:
        hits = (ranks < k).astype(np.float64)
        res[f"top{k}"] = float(hits.mean())
        res[f"top{k}_ci"] = bootstrap_ci(hits, n_boot=n_boot, ci=ci, random_state=random_state)
        res[f"chance_top{k}"] = k / n
    if published is not None:
        check_option("published", published, PUBLISHED_MEEG)
        res["published"] = published
    logger.info("%s", format_identification(res))
    return res


def zero_shot_identification(
    pred,
    candidates,
    true_index,
    k: int | Sequence[int] = (1, 5),
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    random_state: int | None = 0,
    published: str | None = None,
) -> dict:
    """Top-k identification of each prediction among candidate embeddings (cosine).

    Parameters
    ----------
    pred : ndarray of shape (n_queries, dim)
        Predicted embeddings (e.g. of the 200 THINGS-EEG2 test concepts, repetitions averaged).
    candidates : ndarray of shape (n_candidates, dim)
        Embeddings of all candidates (e.g. the 200 test concepts' CLIP embeddings).
    true_index : array-like of int, shape (n_queries,)
        Row of ``candidates`` each query should pick.
    k : int or sequence of int
        Accuracies to report.
    n_boot, ci, random_state
        Bootstrap of the accuracies over queries (see ``evaluation.metrics.bootstrap_ci``).
    published : str or None
        Key of :data:`PUBLISHED_MEEG` to show beside ours.

    Returns
    -------
    dict
        ``top{k}`` (fraction), ``top{k}_ci`` (low, high), ``chance_top{k}`` (= k / n),
        ``n_candidates``, ``n_queries``, ``ranks`` and ``published`` (when given).
    """
    if published is not None:
        check_option("published", published, PUBLISHED_MEEG)
    ranks = identification_ranks(pred, candidates, true_index)
    n = len(np.asarray(candidates))
    ks = _check_ks(k, n)
    return _summarise(
        ranks, n, ks, n_boot=n_boot, ci=ci, random_state=random_state, published=published
    )


def segment_identification(
    pred,
    segments,
    k: int | Sequence[int] = (1, 10),
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    random_state: int | None = 0,
    published: str | None = None,
) -> dict:
    """Top-k identification of each test segment among all test segments (Défossez et al.).

    Parameters
    ----------
    pred : ndarray of shape (n_segments, dim)
        Predicted latents, row-aligned with ``segments``.
    segments : ndarray of shape (n_segments, dim)
        True latents of the segments (e.g. wav2vec 2.0 features); row ``i`` is the target
        of ``pred[i]`` and every row is a candidate.
    k, n_boot, ci, random_state, published
        As in :func:`zero_shot_identification`.

    Returns
    -------
    dict
        As :func:`zero_shot_identification`.
    """
    pred = check_array("pred", pred, ndim=2)
    segments = check_array("segments", segments, ndim=2)
    if len(pred) != len(segments):
        raise BadInputError(
            f"pred and segments must be row-aligned, got {len(pred)} and {len(segments)} rows."
        )
    return zero_shot_identification(
        pred,
        segments,
        np.arange(len(pred)),
        k,
        n_boot=n_boot,
        ci=ci,
        random_state=random_state,
        published=published,
    )


def format_identification(result: dict, published: str | None = None) -> str:
    """A small text table: our top-k (%, with CI), chance, and the published numbers."""
    key = published or result.get("published")
    ref = PUBLISHED_MEEG[key] if key else None
    ks = sorted(int(name[3:]) for name in result if name[3:].isdigit() and name[:3] == "top")
    lines = [f"identification, {result['n_candidates']}-way, {result['n_queries']} queries"]
    header = f"{'':<8}{'ours %':>10}{'95% CI':>18}{'chance %':>10}"
    if ref:
        header += f"{'published %':>13}"
    lines.append(header)
    for k in ks:
        lo, hi = result[f"top{k}_ci"]
        row = (
            f"{'top-' + str(k):<8}{100 * result[f'top{k}']:>10.1f}"
            f"{f'[{100 * lo:.1f}, {100 * hi:.1f}]':>18}{100 * result[f'chance_top{k}']:>10.2f}"
        )
        if ref:
            val = ref["values"].get(f"top{k}")
            row += f"{'—' if val is None else f'{val:.1f}':>13}"
        lines.append(row)
    if ref:
        lines.append(f"published: {ref['method']}, {ref['dataset']}, {ref['setting']}")
        if ref["n_way"] and ref["n_way"] != result["n_candidates"]:
            lines.append(
                f"(published numbers are {ref['n_way']}-way; ours are "
                f"{result['n_candidates']}-way: not directly comparable)"
            )
    return "\n".join(lines)


def _check_subjects(subjects) -> np.ndarray:
    subjects = np.asarray(subjects)
    if subjects.ndim != 1 or subjects.size == 0:
        raise BadInputError(
            f"subjects must be a non-empty 1-D array (one subject per trial), got shape "
            f"{subjects.shape}."
        )
    return subjects


def cross_subject_splits(subjects) -> list[tuple[object, np.ndarray, np.ndarray]]:
    """Leave-one-subject-out splits.

    Parameters
    ----------
    subjects : array-like of shape (n_trials,)
        Subject of each trial.

    Returns
    -------
    list of (subject, train_index, test_index)
        One per subject: that subject's trials are the test set, all others the training set.
    """
    subjects = _check_subjects(subjects)
    uniq = np.unique(subjects)
    if len(uniq) < 2:
        raise BadInputError(f"cross_subject_splits needs at least 2 subjects, got {uniq.tolist()}.")
    out = []
    for s in uniq:
        test = np.flatnonzero(subjects == s)
        train = np.flatnonzero(subjects != s)
        if np.intersect1d(subjects[train], subjects[test]).size:  # cannot happen; guard
            raise RuntimeError(f"subject {s.item()!r} is on both sides of its split.")
        out.append((s.item(), train, test))
    return out


def within_subject_splits(
    subjects, split, stimulus_ids=None
) -> list[tuple[object, np.ndarray, np.ndarray]]:
    """Each subject's own training and test trials (``split == 'train'`` / ``'test'``).

    Parameters
    ----------
    subjects : array-like of shape (n_trials,)
        Subject of each trial.
    split : array-like of str, shape (n_trials,)
        ``'train'`` or ``'test'`` (other labels are left out), e.g. ``Trials.split``.
    stimulus_ids : array-like of shape (n_trials,) or None
        When given, a stimulus that appears on both sides is an error (zero-shot needs
        disjoint stimuli, as THINGS-EEG2's training and test concepts are).

    Returns
    -------
    list of (subject, train_index, test_index)
    """
    subjects = _check_subjects(subjects)
    split = np.asarray(split, dtype=str)
    if split.shape != subjects.shape:
        raise BadInputError(
            f"split must have one label per trial, shape {subjects.shape}, got {split.shape}."
        )
    if stimulus_ids is not None:
        stimulus_ids = np.asarray(stimulus_ids)
        if stimulus_ids.shape != subjects.shape:
            raise BadInputError(
                f"stimulus_ids must have one entry per trial, shape {subjects.shape}, got "
                f"{stimulus_ids.shape}."
            )
    out = []
    for s in np.unique(subjects):
        train = np.flatnonzero((subjects == s) & (split == "train"))
        test = np.flatnonzero((subjects == s) & (split == "test"))
        if len(train) == 0 or len(test) == 0:
            raise BadInputError(
                f"subject {s.item()!r} has {len(train)} 'train' and {len(test)} 'test' trials; "
                "within-subject splits need both."
            )
        if stimulus_ids is not None:
            shared = np.intersect1d(stimulus_ids[train], stimulus_ids[test])
            if shared.size:
                raise BadInputError(
                    f"subject {s.item()!r}: {shared.size} stimuli are in both the train and the "
                    f"test trials (e.g. {shared[:5].tolist()}); zero-shot testing needs "
                    "disjoint stimuli."
                )
        out.append((s.item(), train, test))
    return out
