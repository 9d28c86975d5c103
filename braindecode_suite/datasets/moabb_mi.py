"""Motor-imagery EEG through MOABB (e.g. BNCI 2014-001 = BCI Competition IV 2a).

MOABB owns the download (into MNE's data folder) and the epoching: its ``MotorImagery``
paradigm band-pass filters each run, cuts the imagery interval of every trial and returns
the arrays with labels and metadata. This module turns that into :class:`Trials` with the
class labels as ``info['stimulus_names']``. MOABB is an optional dependency
(``pip install moabb`` or ``pip install braindecode_suite[meeg]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from ..utils.logging import logger, verbose_level
from ..utils.validation import BadInputError, check_option, check_positive_int
from ._trials import Trials

__all__ = ["load_moabb_motor_imagery"]

_INSTALL = (
    "MOABB is needed for motor-imagery datasets: pip install moabb (or braindecode_suite[meeg])."
)


def _import_moabb():
    try:
        import moabb.datasets
        import moabb.paradigms
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"{_INSTALL} ({err})") from err
    return moabb


def _resolve_dataset(dataset):
    moabb = _import_moabb()
    from moabb.datasets.base import BaseDataset

    if isinstance(dataset, BaseDataset):
        return dataset
    if not isinstance(dataset, str):
        raise BadInputError(
            f"dataset must be a MOABB dataset name (e.g. 'BNCI2014_001') or a MOABB dataset "
            f"object, got {type(dataset).__name__}."
        )
    names = sorted(
        n
        for n in dir(moabb.datasets)
        if isinstance(getattr(moabb.datasets, n), type)
        and issubclass(getattr(moabb.datasets, n), BaseDataset)
    )
    check_option("dataset", dataset, names)
    return getattr(moabb.datasets, dataset)()


def _number(name: str, value, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        extra = " or None" if allow_none else ""
        raise BadInputError(f"{name} must be a finite number{extra}, got {value!r}.")
    return float(value)


def _ordinal(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """1-based numbers of string labels in sorted order, and the sorted labels."""
    uniq = sorted(
        set(labels.tolist()),
        key=lambda s: (int(m.group()) if (m := re.match(r"\d+", s)) else np.inf, s),
    )
    index = {lab: i + 1 for i, lab in enumerate(uniq)}
    return np.asarray([index[x] for x in labels], dtype=np.int64), uniq


def load_moabb_motor_imagery(
    dataset="BNCI2014_001",
    subjects: int | Iterable[int] = (1,),
    *,
    fmin: float = 8.0,
    fmax: float = 32.0,
    tmin: float = 0.0,
    tmax: float | None = None,
    n_classes: int | None = None,
    events: list[str] | None = None,
    resample: float | None = None,
    verbose=None,
) -> Trials:
    """Motor-imagery epochs of a MOABB dataset as Trials (labels = stimulus names).

    Parameters
    ----------
    dataset : str | moabb.datasets.base.BaseDataset
        A MOABB dataset class name (``'BNCI2014_001'``) or dataset object (e.g. MOABB's
        offline ``FakeDataset``). A real dataset is downloaded by MOABB on first use.
    subjects : int | sequence of int
        Subjects of the dataset's ``subject_list``.
    fmin, fmax : float
        Band-pass of the paradigm in Hz (``0 <= fmin < fmax``).
    tmin, tmax : float, float | None
        Window relative to the start of the dataset's imagery interval, in seconds
        (``tmax`` None = the end of the interval).
    n_classes : int | None
        Keep this many classes (MOABB's choice); None = all.
    events : list of str | None
        Class names to keep (e.g. ``['left_hand', 'right_hand']``); None = all.
    resample : float | None
        Resample to this rate in Hz.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_trials, n_channels, n_times) in volts (MOABB's own arrays are
        scaled by the dataset's ``unit_factor``, i.e. µV; these are not). ``stimulus_ids`` index
        ``info['stimulus_names']`` (sorted class labels); ``session``/``run`` number MOABB's
        session and run labels from 1 (labels in ``info['session_labels']`` /
        ``info['run_labels']``); ``split`` is ``'test'`` for sessions whose label contains
        ``test`` (BNCI 2014-001's evaluation session ``1test``), else ``'train'``;
        ``repeat`` is 0.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        return _load(dataset, subjects, fmin, fmax, tmin, tmax, n_classes, events, resample)
    finally:
        logger.setLevel(old_level)


def _load(dataset, subjects, fmin, fmax, tmin, tmax, n_classes, events, resample):
    moabb = _import_moabb()
    fmin, fmax = _number("fmin", fmin), _number("fmax", fmax)
    if not 0 <= fmin < fmax:
        raise BadInputError(f"Need 0 <= fmin < fmax, got fmin={fmin} and fmax={fmax}.")
    tmin, tmax = _number("tmin", tmin), _number("tmax", tmax, allow_none=True)
    if tmax is not None and tmax <= tmin:
        raise BadInputError(f"tmax must be > tmin, got tmin={tmin} and tmax={tmax}.")
    resample = _number("resample", resample, allow_none=True)
    if resample is not None and resample <= 0:
        raise BadInputError(f"resample must be a positive rate in Hz, got {resample}.")
    if n_classes is not None:
        n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    ds = _resolve_dataset(dataset)
    if isinstance(subjects, (int, np.integer)) and not isinstance(subjects, bool):
        subjects = [subjects]
    if isinstance(subjects, (str, bytes)) or not isinstance(subjects, Iterable):
        raise BadInputError(f"subjects must be an int or a list of ints, got {subjects!r}.")
    subjects = [check_positive_int("subjects", s) for s in subjects]
    if not subjects:
        raise BadInputError("subjects is empty; give at least one subject.")
    for s in subjects:
        check_option("subjects", s, list(ds.subject_list))
    if events is not None:
        if isinstance(events, str) or not all(isinstance(e, str) for e in events):
            raise BadInputError(f"events must be a list of class names, got {events!r}.")
        for e in events:
            check_option("events", e, list(ds.event_id))
        if n_classes is None:
            n_classes = len(events)  # MOABB needs a class count with an event list
    paradigm = moabb.paradigms.MotorImagery(
        n_classes=n_classes,
        fmin=fmin,
        fmax=fmax,
        events=events,
        tmin=tmin,
        tmax=tmax,
        resample=resample,
    )
    if not paradigm.is_valid(ds):
        raise BadInputError(
            f"dataset {ds.code!r} is not a motor-imagery dataset MOABB's MotorImagery paradigm "
            f"accepts (its paradigm is {ds.paradigm!r}; events {sorted(ds.event_id)})."
        )
    epochs, labels, meta = paradigm.get_data(ds, subjects=subjects, return_epochs=True)
    X = epochs.get_data(copy=False).astype(np.float32)
    labels = np.asarray(labels).astype(str)
    names, ids = np.unique(labels, return_inverse=True)
    session_labels = meta["session"].astype(str).to_numpy()
    session, session_names = _ordinal(session_labels)
    run, run_names = _ordinal(meta["run"].astype(str).to_numpy())
    split = np.where(
        np.char.find(np.char.lower(session_labels.astype(str)), "test") >= 0, "test", "train"
    )
    info = {
        "dataset": "moabb",
        "moabb_dataset": ds.code,
        "units": "V",
        "ch_names": list(epochs.ch_names),
        "sfreq": float(epochs.info["sfreq"]),
        "times": np.asarray(epochs.times),
        "tmin": float(epochs.tmin),
        "paradigm": {
            "name": "MotorImagery",
            "fmin": fmin,
            "fmax": fmax,
            "tmin": tmin,
            "tmax": tmax,
            "n_classes": n_classes,
            "events": events,
            "resample": resample,
            "interval": list(ds.interval),
        },
        "stimulus_names": names,
        "session_labels": session_names,
        "run_labels": run_names,
        "split_rule": "test = sessions whose label contains 'test', else train",
        "moabb_version": moabb.__version__,
    }
    trials = Trials(
        X=X,
        stimulus_ids=ids,
        split=split,
        session=session,
        repeat=np.zeros(len(ids), dtype=np.int64),
        subject=meta["subject"].to_numpy(dtype=np.int64),
        info=info,
        run=run,
    )
    logger.info("Loaded %r", trials)
    return trials
