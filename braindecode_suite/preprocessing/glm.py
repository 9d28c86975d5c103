"""Trial-wise betas from BOLD time series: least-squares-separate (LSS) with nilearn.

For datasets that publish BOLD runs and event files rather than single-trial betas.
:func:`lss_betas` fits one :class:`nilearn.glm.first_level.FirstLevelModel` per trial
(Mumford et al., 2012): that trial is its own regressor, the other trials of its
condition are one regressor, every other condition keeps its own, plus drifts and
confounds. The trial's effect size is its beta.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from ..datasets import Trials
from ..utils.logging import logger, progress_disabled, verbose_level
from ..utils.validation import BadInputError, check_option, check_positive_int
from .fmri import _confounds_array
from .masking import _check_same_grid, _load_image, _load_runs, _names, _nonfinite_voxels

__all__ = ["HRF_MODELS", "lss_betas", "read_events"]

#: HRF models accepted by :func:`lss_betas` (nilearn's names); a callable is accepted too.
HRF_MODELS = (
    "glover",
    "spm",
    "glover + derivative",
    "spm + derivative",
    "glover + derivative + dispersion",
    "spm + derivative + dispersion",
)
_REQUIRED = ("onset", "duration", "trial_type")
_TOL = 1e-6


def read_events(events, *, name: str = "events"):
    """Read and check one run's events: a DataFrame or a BIDS-style TSV (CSV) path.

    Parameters
    ----------
    events : DataFrame | str | PathLike
        Columns ``onset`` and ``duration`` (seconds from the first volume) and
        ``trial_type``; others (``modulation``, a stimulus column) are kept.
    name : str
        Name used in error messages.

    Returns
    -------
    events : DataFrame
        A copy with float onset/duration and str trial_type, in the input row order.
    """
    import pandas as pd

    if isinstance(events, (str, os.PathLike)):
        from ..utils.validation import check_path

        path = check_path(name, events, kind="file")
        sep = "," if path.suffix.lower() == ".csv" else "\t"
        events = pd.read_csv(path, sep=sep)
    if not isinstance(events, pd.DataFrame):
        raise BadInputError(
            f"{name} must be a pandas DataFrame or a TSV/CSV path, got {type(events).__name__}."
        )
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise BadInputError(
            f"{name} lacks column(s) {missing}; it needs {list(_REQUIRED)} (got columns "
            f"{list(events.columns)})."
        )
    if len(events) == 0:
        raise BadInputError(f"{name} has no rows; every run needs at least one trial.")
    ev = events.copy().reset_index(drop=True)
    for col in ("onset", "duration"):
        try:
            ev[col] = ev[col].astype(float)
        except (TypeError, ValueError):
            raise BadInputError(f"{name}[{col!r}] must be numbers (seconds).") from None
        bad = np.flatnonzero(~np.isfinite(ev[col].to_numpy()))
        if len(bad):
            raise BadInputError(f"{name}[{col!r}] is not finite in row(s) {bad[:5].tolist()}.")
    neg = np.flatnonzero(ev["duration"].to_numpy() < 0)
    if len(neg):
        raise BadInputError(
            f"{name} row {int(neg[0])} has duration {ev['duration'][neg[0]]}; durations must "
            "be >= 0."
        )
    if ev["trial_type"].isna().any():
        raise BadInputError(
            f"{name}['trial_type'] is empty in row(s) "
            f"{np.flatnonzero(ev['trial_type'].isna().to_numpy())[:5].tolist()}."
        )
    ev["trial_type"] = ev["trial_type"].astype(str)
    return ev


def _check_inside_run(ev, name: str, n_volumes: int, t_r: float) -> None:
    end = n_volumes * t_r
    onset = ev["onset"].to_numpy()
    stop = onset + ev["duration"].to_numpy()
    bad = np.flatnonzero((onset < -_TOL) | (onset >= end - _TOL) | (stop > end + _TOL))
    if len(bad):
        i = int(bad[0])
        raise BadInputError(
            f"{name} row {i} (onset {onset[i]:g} s, duration {stop[i] - onset[i]:g} s) lies "
            f"outside the run: {n_volumes} volumes x t_r {t_r:g} s = [0, {end:g}) s. Check "
            "t_r, the run order, and that onsets count from the first kept volume."
        )


def lss_betas(
    bold_imgs,
    events,
    *,
    t_r: float,
    mask,
    hrf_model: str | Callable = "glover",
    high_pass: float | None = 0.01,
    drift_model: str | None = "cosine",
    drift_order: int = 1,
    confounds=None,
    noise_model: str = "ar1",
    signal_scaling=0,
    stimulus_column: str | None = None,
    trial_types: Sequence[str] | None = None,
    subject: int = 1,
    session: int = 1,
    n_jobs: int = 1,
    verbose=None,
) -> Trials:
    """Least-squares-separate trial-wise betas with nilearn's ``FirstLevelModel``.

    One GLM per trial: the trial as its own regressor, the other trials of the same
    ``trial_type`` as one regressor, the other conditions one regressor each, plus the
    drift model and confounds. Runs are processed one at a time: one run's 4-D data is
    in memory (as float32) while its trials are fitted.

    Parameters
    ----------
    bold_imgs : str | PathLike | nibabel image | sequence of them
        One 4-D BOLD image per run.
    events : DataFrame | str | PathLike | sequence of them
        One events table per run (see :func:`read_events`); onsets in seconds from the
        run's first volume. Every event must lie inside its run.
    t_r : float
        Repetition time in seconds.
    mask : str | PathLike | nibabel image
        Binary 3-D mask on the BOLD grid; betas are computed for its voxels.
    hrf_model : str | callable
        One of :data:`HRF_MODELS` (the trial's beta is the main regressor; derivative
        and dispersion columns are nuisance), or a callable as nilearn accepts.
    high_pass : float | None
        Cut-off (Hz) of the cosine drift model.
    drift_model : 'cosine' | 'polynomial' | None
    drift_order : int
        Order of the polynomial drift model.
    confounds : ndarray | DataFrame | str | PathLike | sequence | None
        One (n_volumes, n_confounds) table per run (a single one if there is one run).
    noise_model : 'ar1' | 'ols'
    signal_scaling : 0 | 1 | (0, 1) | False
        nilearn's scaling; 0 (default) gives betas in percent signal change.
    stimulus_column : str | None
        Events column holding the stimulus of each trial (integers, or names that are
        coded in sorted order); None: the trial's ``trial_type``.
    trial_types : sequence of str | None
        Compute betas only for trials of these types (every event still enters each
        model); None: every trial. One GLM is fitted per returned trial.
    subject, session : int
        Stored on every trial.
    n_jobs : int
        Passed to ``FirstLevelModel`` (parallel GLM fitting).
    verbose : bool | str | int | None
        Log level for this call; a progress bar over trials shows at INFO.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_trials, n_voxels), trials in onset order within each run,
        ``run`` 1-based in input order; ``stimulus_ids`` as described above (names in
        ``info['stimulus_names']`` when coded); ``repeat`` = earlier trials of the same
        stimulus; ``split`` ``'train'``. ``info`` holds the GLM settings, per-trial
        ``trial_type``/``onset``/``duration``, ``voxel_ijk``, ``affine``, ``units``.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        return _lss_betas(
            bold_imgs,
            events,
            t_r=t_r,
            mask=mask,
            hrf_model=hrf_model,
            high_pass=high_pass,
            drift_model=drift_model,
            drift_order=drift_order,
            confounds=confounds,
            noise_model=noise_model,
            signal_scaling=signal_scaling,
            stimulus_column=stimulus_column,
            trial_types=trial_types,
            subject=subject,
            session=session,
            n_jobs=n_jobs,
        )
    finally:
        logger.setLevel(old_level)


def _as_list(value, n: int, name: str) -> list:
    import pandas as pd

    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, pd.DataFrame)):
        items = list(value)
    else:
        items = [value]
    if len(items) != n:
        raise BadInputError(
            f"{name} has {len(items)} run(s) but bold_imgs has {n}; give one per run "
            "(a run without its events or confounds is missing, or one is extra)."
        )
    return items


def _lss_betas(
    bold_imgs,
    events,
    *,
    t_r,
    mask,
    hrf_model,
    high_pass,
    drift_model,
    drift_order,
    confounds,
    noise_model,
    signal_scaling,
    stimulus_column,
    trial_types,
    subject,
    session,
    n_jobs,
):
    import nibabel as nib
    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.masking import apply_mask
    from tqdm.auto import tqdm

    if isinstance(t_r, bool) or not isinstance(t_r, (int, float, np.number)) or t_r <= 0:
        raise BadInputError(f"t_r must be a positive number of seconds, got {t_r!r}.")
    t_r = float(t_r)
    if not callable(hrf_model):
        check_option("hrf_model", hrf_model, HRF_MODELS)
    check_option("drift_model", drift_model, ("cosine", "polynomial", None))
    check_option("noise_model", noise_model, ("ar1", "ols"))
    if signal_scaling is not False:
        check_option("signal_scaling", signal_scaling, (0, 1, (0, 1)))
    if high_pass is not None and (
        isinstance(high_pass, bool)
        or not isinstance(high_pass, (int, float, np.number))
        or high_pass <= 0
    ):
        raise BadInputError(
            f"high_pass must be None or a positive cut-off in Hz, got {high_pass!r}."
        )
    drift_order = check_positive_int("drift_order", drift_order, minimum=0)
    n_jobs = check_positive_int("n_jobs", n_jobs) if n_jobs != -1 else -1
    if mask is None:
        raise BadInputError(
            "mask is required (a binary 3-D image on the BOLD grid, e.g. a brain or ROI mask); "
            "betas are computed for its voxels."
        )

    run_imgs = _load_runs(bold_imgs, "bold_imgs")
    names = _names(run_imgs, "bold_imgs")
    n_runs = len(run_imgs)
    _check_same_grid(
        list(zip(names, run_imgs, strict=True)), hint=" Every run must share one grid."
    )
    events_list = [
        read_events(ev, name=f"events[{i}]" if n_runs > 1 else "events")
        for i, ev in enumerate(_as_list(events, n_runs, "events"))
    ]
    conf_list = [None] * n_runs if confounds is None else _as_list(confounds, n_runs, "confounds")
    conf_list = [  # checked (and read) up front, before any run is fitted
        _confounds_array(f"confounds[{i}]" if n_runs > 1 else "confounds", c, img.shape[3])
        for i, (c, img) in enumerate(zip(conf_list, run_imgs, strict=True))
    ]
    n_conf = [0 if c is None else int(c.shape[1]) for c in conf_list]
    for i, (img, ev) in enumerate(zip(run_imgs, events_list, strict=True)):
        _check_inside_run(ev, f"events[{i}]" if n_runs > 1 else "events", img.shape[3], t_r)
        if stimulus_column is not None and stimulus_column not in ev.columns:
            raise BadInputError(
                f"stimulus_column={stimulus_column!r} is not a column of events[{i}] (columns "
                f"{list(ev.columns)})."
            )

    mask_img = _load_image("mask", mask, ndim=(3,))
    _check_same_grid(
        [("bold_imgs", run_imgs[0]), ("mask", mask_img)],
        hint=" Resample the mask onto the BOLD grid (nilearn.image.resample_to_img with "
        "interpolation='nearest').",
    )
    mask_data = np.asanyarray(mask_img.dataobj)
    if len(np.unique(mask_data)) > 2:
        raise BadInputError(
            f"mask must be binary, got {len(np.unique(mask_data))} distinct values; threshold "
            "it (nilearn.image.binarize_img)."
        )
    inside = mask_data != 0
    bad = _nonfinite_voxels(run_imgs)
    n_dropped = 0
    if bad is not None and (inside & bad).any():
        n_dropped = int((inside & bad).sum())
        logger.warning(
            "%d mask voxel(s) hold NaN/inf in some BOLD volume; left out of the betas (first: %s).",
            n_dropped,
            np.argwhere(inside & bad)[0].tolist(),
        )
        inside &= ~bad
    if not inside.any():
        raise BadInputError("mask selects no voxel (after leaving out NaN voxels).")
    glm_mask = nib.Nifti1Image(inside.astype(np.uint8), mask_img.affine)

    names_used = {t for ev in events_list for t in ev["trial_type"]}
    if trial_types is not None:
        if isinstance(trial_types, str):
            trial_types = [trial_types]
        unknown = sorted(set(map(str, trial_types)) - names_used)
        if unknown:
            raise BadInputError(
                f"trial_types {unknown} do not occur in the events (trial types present: "
                f"{sorted(names_used)})."
            )
        wanted = set(map(str, trial_types))
    else:
        wanted = names_used
    trial_name = "lss_trial"
    while trial_name in names_used:
        trial_name += "_"
    n_total = sum(int(ev["trial_type"].isin(wanted).sum()) for ev in events_list)
    rows, meta = [], []
    with tqdm(total=n_total, desc="LSS betas", unit="trial", disable=progress_disabled()) as bar:
        for r, (img, ev, conf) in enumerate(zip(run_imgs, events_list, conf_list, strict=True)):
            data = nib.Nifti1Image(
                np.asarray(img.dataobj, dtype=np.float32), img.affine, img.header
            )
            conf_df = (
                None
                if conf is None
                else pd.DataFrame(conf, columns=[f"confound_{k}" for k in range(conf.shape[1])])
            )
            glm_cols = [c for c in ("onset", "duration", "trial_type", "modulation") if c in ev]
            order = np.argsort(ev["onset"].to_numpy(), kind="stable")
            for i in order:
                if ev.loc[i, "trial_type"] not in wanted:
                    continue
                lss_ev = ev[glm_cols].copy()
                lss_ev.loc[i, "trial_type"] = trial_name
                model = FirstLevelModel(
                    t_r=t_r,
                    hrf_model=hrf_model,
                    drift_model=drift_model,
                    high_pass=high_pass,
                    drift_order=drift_order,
                    mask_img=glm_mask,
                    noise_model=noise_model,
                    signal_scaling=signal_scaling,
                    n_jobs=n_jobs,
                    minimize_memory=True,
                    verbose=0,
                )
                with warnings.catch_warnings():
                    # nilearn's own note that the given mask is used: expected here
                    warnings.filterwarnings("ignore", message=".*Given mask will be used")
                    model.fit(data, events=lss_ev, confounds=conf_df)
                columns = list(model.design_matrices_[0].columns)
                contrast = np.array([c == trial_name for c in columns], dtype=float)
                beta = model.compute_contrast(contrast, output_type="effect_size")
                rows.append(apply_mask(beta, glm_mask).astype(np.float32))
                meta.append((r + 1, ev.loc[i]))
                bar.update()
            del data

    X = np.stack(rows)
    trial_type = np.array([m["trial_type"] for _, m in meta])
    info: dict = {
        "dataset": "lss",
        "method": "lss",
        "t_r": t_r,
        "hrf_model": hrf_model
        if isinstance(hrf_model, str)
        else getattr(hrf_model, "__name__", "callable"),
        "drift_model": drift_model,
        "drift_order": drift_order,
        "high_pass": high_pass,
        "noise_model": noise_model,
        "signal_scaling": signal_scaling,
        "units": _units(signal_scaling),
        "n_confounds": n_conf,
        "trial_type": trial_type,
        "onset": np.array([float(m["onset"]) for _, m in meta]),
        "duration": np.array([float(m["duration"]) for _, m in meta]),
        "n_voxels": int(X.shape[1]),
        "voxel_ijk": np.argwhere(inside),
        "affine": np.asarray(mask_img.affine),
        "nan_voxels_dropped": n_dropped,
        "preprocessing": [f"lss_betas(hrf_model={hrf_model!r}, noise_model={noise_model!r})"],
    }
    source = (
        trial_type if stimulus_column is None else np.array([m[stimulus_column] for _, m in meta])
    )
    stim = _code_stimuli(source, info)
    repeat = np.zeros(len(stim), dtype=np.int64)
    seen: dict[int, int] = {}
    for k, s in enumerate(stim.tolist()):
        repeat[k] = seen.get(s, 0)
        seen[s] = repeat[k] + 1
    trials = Trials(
        X=X,
        stimulus_ids=stim,
        split=np.full(len(stim), "train"),
        session=np.full(len(stim), session, dtype=np.int64),
        repeat=repeat,
        subject=subject,
        info=info,
        run=np.array([r for r, _ in meta], dtype=np.int64),
    )
    logger.info("LSS betas: %r", trials)
    return trials


def _units(signal_scaling) -> str:
    if signal_scaling is False:
        return "BOLD units (unscaled)"
    if signal_scaling == 1:
        return "percent of the mean over voxels"
    return "percent signal change"


def _code_stimuli(values: np.ndarray, info: dict) -> np.ndarray:
    """Integers as they are; other values coded by their sorted order (names in info)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu" or (
        arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all()
    ):
        return arr.astype(np.int64)
    names = sorted({str(v) for v in arr.tolist()})
    info["stimulus_names"] = names
    code = {n: k for k, n in enumerate(names)}
    return np.array([code[str(v)] for v in arr.tolist()], dtype=np.int64)
