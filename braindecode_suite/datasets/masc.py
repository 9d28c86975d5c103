"""MEG-MASC adapter (Gwilliams et al. 2023): speech MEG in BIDS, word-onset segments.

Files read (``shared/DATASET_FORMATS.md`` §8), below the BIDS root (``bids_anonym``):

- ``sub-XX/ses-S/meg/sub-XX_ses-S_task-T_meg.con`` (KIT, with ``markers.mrk`` and the
  headshape files), read with :func:`mne_bids.read_raw_bids`. Sessions ``0``/``1`` and tasks
  ``0``–``3`` are 0-based string labels; some subjects have one session only.
- ``..._events.tsv``: columns ``onset duration trial_type value sample``, where
  ``trial_type`` is a **Python dict literal** (parsed with :func:`ast.literal_eval`, never
  ``eval``) with keys such as ``kind`` (``word``/``phoneme``/``sound``/…), ``word``,
  ``phoneme`` (with a ``_B``/``_I``/``_E``/``_S`` position suffix, e.g. ``t_B``),
  ``pronounced``, ``sound`` and ``start``.

``sound`` paths are normalised as brainmagick does: lowercased, and of three dot-separated
parts the middle one is dropped (``Stem.X.wav`` -> ``stem.wav``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from ..utils.logging import logger, verbose_level
from ..utils.validation import BadInputError, check_option, check_path, check_type
from ._trials import Trials
from .bold5000 import repeat_index

__all__ = [
    "MASC_SESSIONS",
    "MASC_TASKS",
    "list_masc_recordings",
    "load_masc",
    "masc_word_segments",
    "normalise_masc_sound",
    "read_masc_events",
]

MASC_SESSIONS = ("0", "1")
MASC_TASKS = ("0", "1", "2", "3")
_POSITIONS = ("B", "I", "E", "S")

_HOW_TO_GET = (
    "MEG-MASC is not downloaded automatically: download OSF project ag3kj and its sibling "
    "components, merge them into one BIDS root (bids_anonym/) and pass it as bids_root."
)


def normalise_masc_sound(path) -> str:
    """Normalise a MASC ``sound`` path: lowercase; ``stem.X.ext`` -> ``stem.ext``.

    Parameters
    ----------
    path : str

    Returns
    -------
    path : str
    """
    check_type("path", path, str)
    low = path.lower()
    parts = low.rsplit(".", 2)
    if len(parts) == 3:
        return f"{parts[0]}.{parts[2]}"
    return low


def _parse_trial_type(text, path: Path, row: int) -> dict:
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise BadInputError(
            f"{str(path)!r}, row {row + 1}: trial_type {str(text)[:80]!r} is not a Python dict "
            f"literal ({type(err).__name__}); MEG-MASC events describe each event as "
            "\"{'kind': 'word', 'word': ..., ...}\"."
        ) from None
    if not isinstance(value, dict):
        raise BadInputError(
            f"{str(path)!r}, row {row + 1}: trial_type {str(text)[:80]!r} is a "
            f"{type(value).__name__}, expected a dict literal with a 'kind' key."
        )
    if "kind" not in value:
        raise BadInputError(
            f"{str(path)!r}, row {row + 1}: trial_type dict has no 'kind' key (keys: "
            f"{sorted(value)}); expected 'word', 'phoneme', 'sound', ..."
        )
    return value


def read_masc_events(events_tsv):
    """Parse a MEG-MASC ``*_events.tsv`` into one row per event with the dict's keys.

    Parameters
    ----------
    events_tsv : str | PathLike

    Returns
    -------
    events : pandas.DataFrame
        The TSV's ``onset``, ``duration``, ``value``, ``sample`` columns, then one column
        per ``trial_type`` key (``kind``, ``word``, ``phoneme``, ``sound``, ``start``, …;
        missing keys are NaN), plus ``phoneme_base``/``phoneme_position`` (``t_B`` ->
        ``t``, ``B``), ``sound`` normalised (see :func:`normalise_masc_sound`) with the
        original in ``sound_raw``. A key that clashes with a TSV column is stored as
        ``tt_<key>``.
    """
    import pandas as pd

    path = check_path("events_tsv", events_tsv, kind="file")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"trial_type": str})
    except (OSError, ValueError) as err:
        raise BadInputError(f"Could not read {str(path)!r} as a TSV table: {err}") from err
    missing = [c for c in ("onset", "trial_type") if c not in table.columns]
    if missing:
        raise BadInputError(
            f"{str(path)!r} lacks the column(s) {missing}; found {list(table.columns)}, "
            "expected onset, duration, trial_type, value, sample."
        )
    parsed = [_parse_trial_type(t, path, i) for i, t in enumerate(table["trial_type"])]
    keys = list(dict.fromkeys(k for d in parsed for k in d))
    out = table.drop(columns=["trial_type"]).copy()
    for key in keys:
        col = f"tt_{key}" if key in out.columns else key
        out[col] = [d.get(key, np.nan) for d in parsed]
    if "phoneme" in out.columns:
        base, pos = [], []
        for ph in out["phoneme"]:
            if isinstance(ph, str) and "_" in ph and ph.rsplit("_", 1)[1] in _POSITIONS:
                b, p = ph.rsplit("_", 1)
            else:
                b, p = (ph, None)
            base.append(b)
            pos.append(p)
        out["phoneme_base"] = base
        out["phoneme_position"] = pos
    if "sound" in out.columns:
        out["sound_raw"] = out["sound"]
        out["sound"] = [normalise_masc_sound(s) if isinstance(s, str) else s for s in out["sound"]]
    logger.debug("read %s: %d events (%s)", path, len(out), dict(out["kind"].value_counts()))
    return out


def _label(name: str, value, allowed) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = str(int(value))
    check_type(name, value, str)
    return check_option(name, value, allowed)


def _subject_label(subject) -> str:
    if isinstance(subject, (int, np.integer)) and not isinstance(subject, bool):
        if subject < 1:
            raise BadInputError(f"subject must be >= 1, got {subject}.")
        return f"{int(subject):02d}"
    check_type("subject", subject, (str, int))
    return subject[4:] if subject.startswith("sub-") else subject


def list_masc_recordings(bids_root, subject=None) -> list[tuple[str, str, str]]:
    """The (subject, session, task) labels of the MEG recordings present.

    Parameters
    ----------
    bids_root : str | PathLike
    subject : int | str | None
        Only this subject (``1`` or ``'01'``); None = all.

    Returns
    -------
    recordings : list of (str, str, str)
        Sorted; a recording counts when its ``*_meg.*`` file or folder exists.
    """
    root = check_path("bids_root", bids_root, kind="dir", hint=_HOW_TO_GET)
    sub = "*" if subject is None else _subject_label(subject)
    found = set()
    for meg in root.glob(f"sub-{sub}/ses-*/meg/sub-*_ses-*_task-*_meg.*"):
        entities = dict(part.split("-", 1) for part in meg.name.split("_")[:-1] if "-" in part)
        if {"sub", "ses", "task"} <= set(entities):
            found.add((entities["sub"], entities["ses"], entities["task"]))
    return sorted(found)


def load_masc(bids_root, subject, session, task, *, verbose=None):
    """One MEG-MASC recording (raw, via mne-bids) and its parsed events.

    Parameters
    ----------
    bids_root : str | PathLike
        The merged BIDS root (``bids_anonym``).
    subject : int | str
        ``1`` or ``'01'``.
    session : int | str
        ``0`` or ``1``.
    task : int | str
        ``0``–``3`` (task 0 is the story ``lw1``).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    raw : mne.io.Raw
        As :func:`mne_bids.read_raw_bids` returns it (annotations from the events file).
    events : pandas.DataFrame
        :func:`read_masc_events` of the recording's events.tsv, with ``subject``,
        ``session`` and ``task`` columns added.
    """
    import mne_bids

    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        sub = _subject_label(subject)
        ses = _label("session", session, MASC_SESSIONS)
        task = _label("task", task, MASC_TASKS)
        root = check_path("bids_root", bids_root, kind="dir", hint=_HOW_TO_GET)
        bp = mne_bids.BIDSPath(
            subject=sub, session=ses, task=task, datatype="meg", suffix="meg", root=root
        )
        present = list_masc_recordings(root, sub)
        if (sub, ses, task) not in present:
            raise BadInputError(
                f"MEG-MASC recording sub-{sub} ses-{ses} task-{task} not found in "
                f"{str(root)!r}; recordings of sub-{sub} present (session, task): "
                f"{[(s, t) for _, s, t in present] or 'none'}. Some subjects have one "
                f"session only. {_HOW_TO_GET}"
            )
        events_tsv = Path(str(bp.copy().update(suffix="events", extension=".tsv")))
        if not events_tsv.is_file():
            raise BadInputError(
                f"MEG-MASC events file {str(events_tsv)!r} not found; it holds the word and "
                "phoneme onsets."
            )
        raw = mne_bids.read_raw_bids(bp, verbose=False)
        events = read_masc_events(events_tsv)
        events["subject"] = sub
        events["session"] = ses
        events["task"] = task
        logger.info(
            "MEG-MASC sub-%s ses-%s task-%s: %s, %d events", sub, ses, task, raw, len(events)
        )
        return raw, events
    finally:
        logger.setLevel(old_level)


def masc_word_segments(
    raw, events, *, tmin: float = -0.2, tmax: float = 0.6, verbose=None
) -> Trials:
    """Cut the recording into windows around each word onset.

    Parameters
    ----------
    raw : mne.io.Raw
        The recording (e.g. from :func:`load_masc`, possibly filtered).
    events : pandas.DataFrame
        :func:`read_masc_events` output; rows with ``kind == 'word'`` are used, their
        ``onset`` (seconds from the start of the recording) placing each window.
    tmin, tmax : float
        Window start and end in seconds relative to the word onset (``tmin < tmax``).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_words, n_data_channels, n_times) in the raw's units; windows that
        do not fit in the recording are dropped. ``stimulus_ids`` index
        ``info['stimulus_names']`` (sorted unique words); ``repeat`` counts earlier
        occurrences of the same word; ``split`` is ``'train'`` (MASC has no official
        split); ``session`` and ``run`` are the BIDS session and task when the events
        carry them (else 0). ``info['word_events']`` is a DataFrame row-aligned with the
        trials (of this call, not of a later ``select``) with ``word``, ``sound`` (normalised
        path of the story audio), ``sound_onset`` (the word's onset within that sound, the
        dict's ``start``), ``onset`` and ``sample``.
    """
    import mne
    import pandas as pd

    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        if not isinstance(raw, mne.io.BaseRaw):
            raise BadInputError(f"raw must be an mne Raw object, got {type(raw).__name__}.")
        check_type("events", events, pd.DataFrame)
        for name, v in (("tmin", tmin), ("tmax", tmax)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise BadInputError(f"{name} must be a finite number of seconds, got {v!r}.")
        if tmin >= tmax:
            raise BadInputError(f"tmin must be < tmax, got tmin={tmin} and tmax={tmax}.")
        missing = [c for c in ("onset", "kind", "word") if c not in events.columns]
        if missing:
            raise BadInputError(
                f"events lacks the column(s) {missing} (has {list(events.columns)}); pass "
                "the DataFrame of read_masc_events / load_masc."
            )
        words = events[events["kind"] == "word"].reset_index(drop=True)
        if words.empty:
            raise BadInputError(
                f"events holds no 'word' event (kinds: {sorted(events['kind'].astype(str).unique())})."
            )
        sfreq = float(raw.info["sfreq"])
        samples = np.round(words["onset"].to_numpy(dtype=float) * sfreq).astype(np.int64)
        arr = np.column_stack(
            [samples + raw.first_samp, np.zeros_like(samples), np.ones_like(samples)]
        )
        epochs = mne.Epochs(
            raw,
            arr,
            event_id={"word": 1},
            tmin=tmin,
            tmax=tmax,
            baseline=None,
            picks="data",
            preload=True,
            reject_by_annotation=False,
            event_repeated="drop",
            verbose=False,
        )
        kept = epochs.selection
        if len(kept) == 0:
            raise BadInputError(
                f"No word window [{tmin}, {tmax}] s fits in the recording "
                f"({raw.times[-1]:.1f} s long)."
            )
        if len(kept) < len(words):
            logger.info(
                "MEG-MASC: %d of %d word windows dropped (outside the recording or "
                "repeated onsets).",
                len(words) - len(kept),
                len(words),
            )
        words = words.iloc[kept].reset_index(drop=True)
        word_text = words["word"].astype(str).to_numpy()
        names, ids = np.unique(word_text, return_inverse=True)

        def column(name, default):
            if name in words.columns:
                return pd.to_numeric(words[name], errors="coerce").fillna(default).to_numpy()
            return np.full(len(words), default)

        meta = pd.DataFrame(
            {
                "word": word_text,
                "sound": words["sound"] if "sound" in words.columns else np.nan,
                "sound_onset": column("start", np.nan),
                "onset": words["onset"].to_numpy(dtype=float),
                "sample": samples[kept],
            }
        )
        info = {
            "dataset": "masc",
            "units": "as in raw (T for magnetometers)",
            "ch_names": list(epochs.ch_names),
            "sfreq": sfreq,
            "times": np.asarray(epochs.times),
            "tmin": float(tmin),
            "stimulus_names": names,
            "word_events": meta,
            "split_rule": "all train (MEG-MASC has no official split)",
        }
        subject = column("subject", 0).astype(np.int64)
        trials = Trials(
            X=epochs.get_data(copy=False).astype(np.float32),
            stimulus_ids=ids,
            split=np.full(len(ids), "train"),
            session=column("session", 0).astype(np.int64),
            repeat=repeat_index(ids),
            subject=subject,
            info=info,
            run=column("task", 0).astype(np.int64),
        )
        logger.info("Loaded %r", trials)
        return trials
    finally:
        logger.setLevel(old_level)
