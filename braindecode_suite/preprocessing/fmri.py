"""fMRI trial preprocessing: per-session z-scoring, repeat averaging, time-series cleaning.

Masking of images lives in :mod:`.masking`, trial-wise GLM betas in :mod:`.glm`.
"""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np

from ..datasets import Trials
from ..utils.validation import BadInputError, check_option, check_type

__all__ = ["zscore_per_session", "average_repeats", "clean_trials"]


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


# ----------------------------------------------------------------------------- cleaning
_STANDARDIZE = (False, True, None, "zscore_sample", "zscore", "psc")
_FILTERS = ("butterworth", "cosine")


def _standardize_option(standardize) -> str | None:
    """``True`` means ``'zscore_sample'`` (ddof=1); ``False``/None mean no scaling (None)."""
    if standardize is None or isinstance(standardize, (bool, np.bool_)):
        return "zscore_sample" if standardize else None
    return check_option("standardize", standardize, _STANDARDIZE)


def _confounds_array(name: str, confounds, n_rows: int) -> np.ndarray | None:
    """Confounds as a float (n_rows, n_confounds) array (from an array, DataFrame or TSV/CSV)."""
    import pandas as pd

    if confounds is None:
        return None
    if isinstance(confounds, (str, os.PathLike)):
        from ..utils.validation import check_path

        path = check_path(name, confounds, kind="file")
        sep = "," if path.suffix.lower() == ".csv" else "\t"
        confounds = pd.read_csv(path, sep=sep)
    if isinstance(confounds, pd.Series):
        confounds = confounds.to_frame()
    if isinstance(confounds, pd.DataFrame):
        bad_cols = [c for c in confounds.columns if confounds[c].isna().any()]
        if bad_cols:
            raise BadInputError(
                f"{name} has NaN in column(s) {bad_cols[:5]} (e.g. the first row of fMRIPrep's "
                "derivative columns); fill them (e.g. confounds.fillna(0)) or drop the columns."
            )
        try:
            arr = confounds.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise BadInputError(f"{name} must hold numbers only: {err}") from None
    else:
        arr = np.asarray(confounds)
        if arr.dtype.kind not in "biuf":
            raise BadInputError(
                f"{name} must be an array, DataFrame or TSV/CSV path of numbers, got "
                f"{type(confounds).__name__} of dtype {arr.dtype}."
            )
        arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n_rows:
        raise BadInputError(
            f"{name} must have one row per time point ({n_rows} rows), got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise BadInputError(
            f"{name} contains {int((~np.isfinite(arr)).sum())} non-finite values; fill or drop "
            "them first."
        )
    return arr


def _clean_signals(
    X: np.ndarray,
    runs: np.ndarray,
    *,
    detrend: bool,
    high_pass: float | None,
    t_r: float | None,
    confounds: np.ndarray | None,
    standardize,
    filter: str = "butterworth",
) -> np.ndarray:
    """:func:`nilearn.signal.clean` with ``runs=``, keeping the input row order.

    nilearn returns the runs stacked in sorted run order; rows are sorted by run (stably,
    so time order within a run is kept) before the call and put back after it.
    """
    from nilearn.signal import clean

    if not detrend and high_pass is None and confounds is None and not standardize:
        return X
    _, codes, counts = np.unique(runs, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        short = np.unique(runs)[counts < 2].tolist()
        raise BadInputError(
            f"run(s) {short} have a single time point; detrending, filtering, confound "
            "regression and standardising need at least 2 per run."
        )
    order = np.argsort(codes, kind="stable")
    cleaned = clean(
        X[order].astype(np.float64),
        runs=codes[order],
        detrend=bool(detrend),
        standardize=standardize,
        confounds=None if confounds is None else confounds[order],
        filter=filter if high_pass is not None else False,
        high_pass=high_pass,
        t_r=t_r,
    )
    out = np.empty_like(cleaned)
    out[order] = cleaned
    return out


def _check_filter_args(high_pass, t_r, filter: str) -> tuple[float | None, float | None]:
    check_option("filter", filter, _FILTERS)
    if t_r is not None:
        if isinstance(t_r, bool) or not isinstance(t_r, (int, float, np.number)) or t_r <= 0:
            raise BadInputError(f"t_r must be a positive number of seconds, got {t_r!r}.")
        t_r = float(t_r)
    if high_pass is not None:
        if (
            isinstance(high_pass, bool)
            or not isinstance(high_pass, (int, float, np.number))
            or high_pass <= 0
        ):
            raise BadInputError(
                f"high_pass must be None or a positive cut-off in Hz, got {high_pass!r}."
            )
        if t_r is None:
            raise BadInputError(
                f"high_pass={high_pass} needs the repetition time: pass t_r=<seconds>."
            )
        high_pass = float(high_pass)
    return high_pass, t_r


def clean_trials(
    trials: Trials,
    *,
    detrend: bool = False,
    high_pass: float | None = None,
    t_r: float | None = None,
    confounds=None,
    standardize: bool | str = False,
    filter: str = "butterworth",
) -> Trials:
    """Clean a time series of volumes, one run at a time (:func:`nilearn.signal.clean`).

    For trials that are consecutive volumes of a BOLD time series (e.g. Haxby's
    ``unit='volume'`` trials with rest kept): detrending, high-pass filtering, confound
    regression and standardising are done within each (session, run), passing ``runs=``
    to nilearn. Rows must be in acquisition order within each run; row order is kept.

    Parameters
    ----------
    trials : Trials
        ``X`` of shape (n_volumes, n_features); ``session`` and ``run`` say which rows
        form one run.
    detrend : bool
        Remove a linear trend per run.
    high_pass : float | None
        High-pass cut-off in Hz (needs ``t_r``).
    t_r : float | None
        Repetition time in seconds.
    confounds : ndarray | DataFrame | str | PathLike | None
        (n_volumes, n_confounds) regressors (or a TSV/CSV path), projected out per run.
    standardize : bool | 'zscore_sample' | 'zscore' | 'psc'
        Scale per run; True means ``'zscore_sample'`` (s.d. with ddof=1).
    filter : 'butterworth' | 'cosine'
        How ``high_pass`` is applied (a Butterworth filter, or cosine drift regressors).

    Returns
    -------
    trials : Trials
        A copy with float32 ``X``; ``info['preprocessing']`` gains a ``'clean_trials(...)'``
        entry naming the settings.
    """
    check_type("trials", trials, Trials)
    X = np.asarray(trials.X)
    if X.ndim != 2:
        raise BadInputError(
            f"clean_trials needs X of shape (n_volumes, n_features), got {X.shape}."
        )
    high_pass, t_r = _check_filter_args(high_pass, t_r, filter)
    standardize = _standardize_option(standardize)
    conf = _confounds_array("confounds", confounds, X.shape[0])
    _, runs = np.unique(np.stack([trials.session, trials.run], axis=1), axis=0, return_inverse=True)
    runs = runs.reshape(-1)
    cleaned = _clean_signals(
        X,
        runs,
        detrend=detrend,
        high_pass=high_pass,
        t_r=t_r,
        confounds=conf,
        standardize=standardize,
        filter=filter,
    )
    info = copy.deepcopy(trials.info)
    n_conf = 0 if conf is None else conf.shape[1]
    step = (
        f"clean_trials(detrend={bool(detrend)}, high_pass={high_pass}, t_r={t_r}, "
        f"n_confounds={n_conf}, standardize={standardize!r}, filter={filter!r})"
    )
    info["preprocessing"] = [*info.get("preprocessing", []), step]
    return _replace(trials, X=cleaned.astype(np.float32), info=info)
