"""fMRI trial preprocessing: per-session z-scoring and repeat averaging."""

from __future__ import annotations

import copy
import warnings

import numpy as np

from ..datasets import Trials
from ..utils.validation import BadInputError, check_type

__all__ = ["zscore_per_session", "average_repeats"]


def zscore_per_session(trials: Trials) -> Trials:
    """Z-score every voxel within each session (mean 0, s.d. 1 with ddof=1).

    NSD's recommended normalisation (betas drift between sessions). Uses
    :func:`nilearn.signal.clean` (``standardize='zscore_sample'``) on one session at a
    time. We do not pass ``runs=session`` to a single call: nilearn then returns the
    runs concatenated in sorted run order, not in the input row order, which would
    silently misalign trials whose sessions are interleaved; one call per session also
    keeps memory to one session in float64. A voxel that is constant within a session
    gets 0 there (nilearn divides by 1 when the s.d. is ~0), never NaN. A session with
    a single trial gets 0 for every voxel.

    Parameters
    ----------
    trials : Trials
        ``X`` of shape (n_trials, n_voxels).

    Returns
    -------
    trials : Trials
        A copy with float32 ``X``; ``info['preprocessing']`` gains ``'zscore_per_session'``.
    """
    from nilearn.signal import clean

    check_type("trials", trials, Trials)
    X = np.asarray(trials.X)
    if X.ndim != 2:
        raise BadInputError(
            f"zscore_per_session needs X of shape (n_trials, n_voxels), got {X.shape}."
        )
    out = np.empty(X.shape, dtype=np.float32)
    for s in np.unique(trials.session):
        rows = np.flatnonzero(trials.session == s)
        if len(rows) < 2:
            out[rows] = 0.0
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "standardization of 1 sample" etc.
            cleaned = clean(
                X[rows].astype(np.float64),
                detrend=False,
                standardize="zscore_sample",
                standardize_confounds=False,
                filter=False,
                t_r=None,
            )
        out[rows] = cleaned
    info = copy.deepcopy(trials.info)
    info["preprocessing"] = [*info.get("preprocessing", []), "zscore_per_session"]
    if "units" in info:
        info["units_raw"] = info["units"]
    info["units"] = "z-score within session"
    return _replace(trials, X=out, info=info)


def _replace(trials: Trials, **changes) -> Trials:
    fields = {
        "X": trials.X,
        "stimulus_ids": trials.stimulus_ids,
        "split": trials.split,
        "session": trials.session,
        "repeat": trials.repeat,
        "subject": trials.subject,
        "info": trials.info,
        "run": trials.run,
    }
    fields.update(changes)
    return Trials(**fields)


def average_repeats(trials: Trials, *, split: str | None = "test") -> Trials:
    """Average the trials of each stimulus within ``split`` (e.g. NSD's 3 test repeats).

    Parameters
    ----------
    trials : Trials
    split : str | None
        Split to average (others are left as they are); None averages every split.

    Returns
    -------
    trials : Trials
        Splits in order of first appearance. An averaged split has one row per
        stimulus, sorted by stimulus id, with ``repeat = -1``, ``run = -1`` and ``session = -1``
        when the averaged trials came from different sessions (else that session);
        other splits keep their rows and order. ``info['n_repeats_averaged']`` maps
        each averaged split to ``{'n_stimuli', 'min', 'max', 'mean'}`` trials per
        stimulus.
    """
    check_type("trials", trials, Trials)
    present = list(dict.fromkeys(trials.split.tolist()))
    if split is not None and split not in present:
        raise BadInputError(
            f"split={split!r} is not in the trials (splits present: {present}); pass one "
            "of them or None for all."
        )
    targets = present if split is None else [split]
    parts = []
    counts = {}
    for name in present:
        rows = np.flatnonzero(trials.split == name)
        if name not in targets:
            parts.append(_replace(trials.select(rows)))
            continue
        ids, first, inverse, n = np.unique(
            trials.stimulus_ids[rows], return_index=True, return_inverse=True, return_counts=True
        )
        X = np.zeros((len(ids), *trials.X.shape[1:]), dtype=np.float64)
        np.add.at(X, inverse, trials.X[rows])
        X /= n.reshape(-1, *([1] * (X.ndim - 1)))
        session = np.full(len(ids), -1, dtype=np.int64)
        s_min = np.full(len(ids), np.iinfo(np.int64).max)
        s_max = np.full(len(ids), np.iinfo(np.int64).min)
        np.minimum.at(s_min, inverse, trials.session[rows])
        np.maximum.at(s_max, inverse, trials.session[rows])
        session[s_min == s_max] = s_min[s_min == s_max]
        parts.append(
            Trials(
                X=X.astype(np.float32),
                stimulus_ids=ids,
                split=np.full(len(ids), name),
                session=session,
                repeat=np.full(len(ids), -1),
                subject=trials.subject[rows[first]],
                info={},
                run=np.full(len(ids), -1),
            )
        )
        counts[name] = {
            "n_stimuli": int(len(ids)),
            "min": int(n.min()),
            "max": int(n.max()),
            "mean": float(n.mean()),
        }
    info = copy.deepcopy(trials.info)
    info["n_repeats_averaged"] = {**info.get("n_repeats_averaged", {}), **counts}
    info["preprocessing"] = [*info.get("preprocessing", []), f"average_repeats({split!r})"]
    return Trials(
        X=np.concatenate([p.X for p in parts]).astype(np.float32),
        stimulus_ids=np.concatenate([p.stimulus_ids for p in parts]),
        split=np.concatenate([p.split for p in parts]),
        session=np.concatenate([p.session for p in parts]),
        repeat=np.concatenate([p.repeat for p in parts]),
        subject=np.concatenate([p.subject for p in parts]),
        info=info,
        run=np.concatenate([p.run for p in parts]),
    )
