"""THINGS-MEG adapter (THINGS-data, Hebart et al. 2023): preprocessed epochs or raw BIDS.

Files read (``shared/DATASET_FORMATS.md`` §3), below the BIDS root (OpenNeuro ds004212):

- ``derivatives/preprocessed/preprocessed_P{n}-epo.fif`` (``source='derivatives'``): MNE
  epochs of all 12 sessions (``mag`` channels, 0.1–40 Hz, -0.1…1.3 s, z-scored to the
  baseline, 200 Hz) whose metadata has the columns ``trial_type`` (``exp``/``test``/
  ``catch``), ``session_nr``, ``run_nr``, ``things_category_nr`` and ``image_path``.
- ``sub-BIGMEG{n}/ses-SS/meg/*_meg.ds`` + ``*_events.tsv`` (``source='bids'``): CTF
  recordings, read with :func:`mne_bids.read_raw_bids`; the events come from the events.tsv
  columns ``sample`` (photodiode-corrected onset) and ``value`` (NaN = catch, read as
  999999), as THINGS-data's ``MEG/step1_preprocessing.py`` does.

The 200 ``test`` images are shown once per session (12 repetitions); ``exp`` images once.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..utils.logging import logger, progress_disabled, verbose_level
from ..utils.validation import BadInputError, check_option, check_path, check_positive_int
from ._trials import Trials
from .bold5000 import repeat_index

__all__ = ["THINGS_MEG_SOURCES", "MEGRun", "load_things_meg", "read_things_meg_events"]

THINGS_MEG_SOURCES = ("derivatives", "bids")
METADATA_COLUMNS = ("trial_type", "session_nr", "run_nr", "things_category_nr", "image_path")
#: Event value given to catch trials (``value`` NaN in events.tsv), as THINGS-data does.
CATCH_VALUE = 999999
N_SUBJECTS = 4

_HOW_TO_GET = (
    "Get THINGS-MEG from OpenNeuro ds004212 (raw BIDS) and the preprocessed epochs "
    "(derivatives/preprocessed/preprocessed_P{n}-epo.fif, Figshare+ "
    "doi:10.25452/figshare.plus.c.6161151), and pass the BIDS root as bids_root."
)


class MEGRun(NamedTuple):
    """One raw recording with its events (``source='bids'``).

    Attributes
    ----------
    raw : mne.io.Raw
        As :func:`mne_bids.read_raw_bids` returns it (not preloaded).
    events : ndarray of int, shape (n_events, 3)
        ``sample`` of events.tsv, 0, ``value`` (catch = 999999).
    session : int
    run : int
    """

    raw: object
    events: np.ndarray
    session: int
    run: int


def load_things_meg(
    bids_root,
    subject: int = 1,
    *,
    source: str = "derivatives",
    sessions=None,
    verbose=None,
):
    """Load one THINGS-MEG participant: preprocessed epochs as Trials, or raw runs.

    Parameters
    ----------
    bids_root : str | PathLike
        The BIDS root (holding ``sub-BIGMEG{n}/`` and/or ``derivatives/preprocessed/``).
    subject : int
        1–4 (``P1``…``P4`` = ``sub-BIGMEG1``…``sub-BIGMEG4``).
    source : 'derivatives' | 'bids'
        ``'derivatives'``: read ``preprocessed_P{n}-epo.fif`` and return :class:`Trials`;
        ``'bids'``: read every run with mne-bids and return a list of :class:`MEGRun` for
        ``preprocessing.meg_eeg`` to epoch.
    sessions : sequence of int | None
        ``'bids'`` only: sessions to read (None = all present).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        (``'derivatives'``) ``X`` float32 (n_trials, n_channels, n_times) without catch
        trials; ``split`` ``'test'`` for ``trial_type == 'test'``, else ``'train'``;
        ``stimulus_ids`` index ``info['stimulus_names']`` (sorted unique ``image_path``);
        ``session``/``run`` from ``session_nr``/``run_nr``; ``repeat`` counts earlier
        showings of the same image; ``info`` holds ``ch_names``, ``sfreq``, ``times``,
        ``stimulus_category_nr`` and the file read.
    runs : list of MEGRun
        (``'bids'``) one per run, sorted by session and run.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        check_option("source", source, THINGS_MEG_SOURCES)
        subject = check_positive_int("subject", subject)
        check_option("subject", subject, range(1, N_SUBJECTS + 1))
        root = check_path("bids_root", bids_root, kind="dir", hint=_HOW_TO_GET)
        if source == "derivatives":
            if sessions is not None:
                raise BadInputError(
                    "sessions applies to source='bids' only; the derivatives file holds all "
                    "sessions (select them with trials.select(trials.session == s))."
                )
            return _load_derivatives(root, subject)
        return _load_bids(root, subject, sessions)
    finally:
        logger.setLevel(old_level)


def _load_derivatives(root: Path, subject: int) -> Trials:
    import mne

    path = root / "derivatives" / "preprocessed" / f"preprocessed_P{subject}-epo.fif"
    if not path.is_file():
        raise BadInputError(f"THINGS-MEG epochs {str(path)!r} not found. {_HOW_TO_GET}")
    try:
        epochs = mne.read_epochs(path, preload=False, verbose=False)
    except (OSError, ValueError) as err:
        raise BadInputError(f"Could not read {str(path)!r} as MNE epochs: {err}") from err
    meta = epochs.metadata
    if meta is None:
        raise BadInputError(
            f"{str(path)!r} has no epoch metadata; expected the columns {list(METADATA_COLUMNS)}."
        )
    missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
    if missing:
        raise BadInputError(
            f"{str(path)!r}: epoch metadata lacks the column(s) {missing}; found "
            f"{list(meta.columns)}, expected {list(METADATA_COLUMNS)}."
        )
    kinds = meta["trial_type"].astype(str).to_numpy()
    unknown = sorted(set(kinds) - {"exp", "test", "catch"})
    if unknown:
        raise BadInputError(
            f"{str(path)!r}: trial_type has value(s) {unknown}; expected 'exp', 'test' or 'catch'."
        )
    keep = np.flatnonzero(kinds != "catch")
    if len(keep) == 0:
        raise BadInputError(f"{str(path)!r} holds only catch trials.")
    epochs = epochs[keep]
    epochs.load_data()
    epochs.pick("data", exclude=[])
    X = epochs.get_data(copy=False).astype(np.float32, copy=False)
    ch_names = list(epochs.ch_names)
    meta = meta.iloc[keep].reset_index(drop=True)
    paths = meta["image_path"].astype(str).to_numpy()
    names, ids = np.unique(paths, return_inverse=True)
    category = np.zeros(len(names), dtype=np.int64)
    category[ids] = meta["things_category_nr"].to_numpy(dtype=np.int64)
    split = np.where(kinds[keep] == "test", "test", "train")
    test_names = {str(n) for n in names[ids[split == "test"]]}
    train_names = {str(n) for n in names[ids[split == "train"]]}
    if test_names & train_names:
        raise BadInputError(
            f"{str(path)!r}: {len(test_names & train_names)} image(s) are both 'test' and "
            f"'exp' trials, e.g. {sorted(test_names & train_names)[:3]}; splits must be disjoint."
        )
    info = {
        "dataset": "things_meg",
        "source": "derivatives",
        "units": "z-score to the pre-stimulus baseline (THINGS-data preprocessing)",
        "ch_names": ch_names,
        "sfreq": float(epochs.info["sfreq"]),
        "times": np.asarray(epochs.times),
        "tmin": float(epochs.tmin),
        "n_catch_dropped": int(len(kinds) - len(keep)),
        "stimulus_names": names,
        "stimulus_category_nr": category,
        "stimulus_concepts": np.asarray([Path(n).parent.name for n in names], dtype=str),
        "files": {"epochs": str(path)},
    }
    trials = Trials(
        X=X,
        stimulus_ids=ids,
        split=split,
        session=meta["session_nr"].to_numpy(dtype=np.int64),
        repeat=repeat_index(ids),
        subject=subject,
        info=info,
        run=meta["run_nr"].to_numpy(dtype=np.int64),
    )
    logger.info("Loaded %r (%d catch trials dropped)", trials, info["n_catch_dropped"])
    return trials


def read_things_meg_events(events_tsv) -> np.ndarray:
    """MNE events from a THINGS-MEG ``*_events.tsv`` (``sample``, ``value``; NaN = catch).

    Parameters
    ----------
    events_tsv : str | PathLike

    Returns
    -------
    events : ndarray of int64, shape (n_events, 3)
        ``sample``, 0, ``value`` with NaN values replaced by 999999.
    """
    import pandas as pd

    path = check_path("events_tsv", events_tsv, kind="file")
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as err:
        raise BadInputError(f"Could not read {str(path)!r} as a TSV table: {err}") from err
    missing = [c for c in ("sample", "value") if c not in table.columns]
    if missing:
        raise BadInputError(
            f"{str(path)!r} lacks the column(s) {missing}; found {list(table.columns)}, "
            "expected 'sample' (onset sample) and 'value' (image number, NaN for catch)."
        )
    sample = pd.to_numeric(table["sample"], errors="coerce")
    if sample.isna().any():
        raise BadInputError(
            f"{str(path)!r}: 'sample' has {int(sample.isna().sum())} missing or non-numeric "
            "entries; every event needs an onset sample."
        )
    value = pd.to_numeric(table["value"], errors="coerce").fillna(CATCH_VALUE)
    events = np.zeros((len(table), 3), dtype=np.int64)
    events[:, 0] = sample.to_numpy().round().astype(np.int64)
    events[:, 2] = value.to_numpy().round().astype(np.int64)
    return events


def _load_bids(root: Path, subject: int, sessions) -> list[MEGRun]:
    import mne_bids
    from tqdm.auto import tqdm

    sub = f"BIGMEG{subject}"
    paths = mne_bids.find_matching_paths(
        root,
        subjects=sub,
        datatypes="meg",
        suffixes="meg",
        extensions=[".ds", ".fif"],
    )
    paths = [p for p in paths if p.session is not None and p.run is not None]
    if not paths:
        raise BadInputError(
            f"No MEG recording (sub-{sub}/ses-SS/meg/*_run-RR_meg.ds) in {str(root)!r}. "
            f"{_HOW_TO_GET}"
        )
    present = sorted({int(p.session) for p in paths})
    if sessions is not None:
        if isinstance(sessions, (int, np.integer)):
            sessions = [sessions]
        wanted = sorted({check_positive_int("sessions", s) for s in sessions})
        absent = [s for s in wanted if s not in present]
        if absent:
            raise BadInputError(
                f"sessions {absent} of sub-{sub} not found in {str(root)!r} (present: {present})."
            )
        paths = [p for p in paths if int(p.session) in wanted]
    paths.sort(key=lambda p: (int(p.session), int(p.run)))
    runs = []
    for bp in tqdm(paths, desc=f"THINGS-MEG sub-{sub}", disable=progress_disabled()):
        events_tsv = Path(str(bp.copy().update(suffix="events", extension=".tsv")))
        if not events_tsv.is_file():
            raise BadInputError(
                f"{str(bp.fpath)!r} has no events file {str(events_tsv)!r}; THINGS-MEG onsets "
                "and image numbers come from it."
            )
        raw = mne_bids.read_raw_bids(bp, verbose=False)
        events = read_things_meg_events(events_tsv)
        last = raw.first_samp + raw.n_times
        outside = (events[:, 0] < raw.first_samp) | (events[:, 0] >= last)
        if outside.any():
            raise BadInputError(
                f"{str(events_tsv)!r}: {int(outside.sum())} event sample(s) lie outside the "
                f"recording (samples {raw.first_samp}..{last - 1}), e.g. "
                f"{events[outside, 0][:3].tolist()}."
            )
        runs.append(MEGRun(raw, events, int(bp.session), int(bp.run)))
        logger.debug("read %s: %d events", bp.fpath, len(events))
    logger.info(
        "THINGS-MEG sub-%s: %d run(s) of session(s) %s",
        sub,
        len(runs),
        sorted({r.session for r in runs}),
    )
    return runs
