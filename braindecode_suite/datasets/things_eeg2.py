"""THINGS-EEG2 adapter (Gifford et al. 2022): the preprocessed release and the raw dicts.

Files read (``shared/DATASET_FORMATS.md`` §2), below ``data_dir``:

- ``eeg_dataset/preprocessed_data/sub-XX/preprocessed_eeg_{training,test}.npy`` (official
  release, 100 Hz): ``np.save`` of a dict, loaded with ``allow_pickle=True`` then ``.item()``.
  ``preprocessed_eeg_data`` is (condition, repetition, channel, time) = (16540, 4, 17, 100)
  for training and (200, 80, 17, 100) for test; ``ch_names``; ``times`` (100 values,
  -0.2 … 0.79 s). Row ``i`` is image condition ``i + 1``.
- ``Preprocessed_data_250Hz/sub-XX/preprocessed_eeg_{training,test}.npy`` (NICE/ATM variant,
  ``variant='250hz'``): the same keys, 63 channels, 250 Hz, data cropped to 0–1 s (250
  samples) **but ``times`` keeps its 300 entries from -0.2 s**; written with ``pickle.dump``
  although the suffix is ``.npy``. Both serialisations are accepted for both variants.
- ``eeg_dataset/raw_data/sub-XX/ses-YY/raw_eeg_{training,test}.npy``: dict with
  ``raw_eeg_data`` (n_channels + 1, n_samples) whose last row is the ``stim`` channel (1-based
  image condition at each onset, 99999 for target/catch trials), ``ch_names``, ``ch_types``,
  ``sfreq`` (1000), ``highpass``, ``lowpass``.
- ``image_set/{training_images,test_images}/<NNNNN_concept>/<img>.jpg``: the image
  conditions are these files in sorted path order (10 images per training concept, one per
  test concept); training and test concepts are disjoint.

Expected counts and shapes are read from ``data_manifests/things_eeg2.yaml`` (``expected:``)
and a file that disagrees fails, naming the file and the expected value. One exception: a
test file with 20 repetitions per condition (one recording session, as eeg_encoding's
epoching keeps at most 20 test repetitions per session; eeg_encoding issue #9) is accepted
with a warning, since the OSF release has 4 sessions × 20 = 80.

``.npy`` files holding pickles can run code when loaded: read only files you trust.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils.logging import logger, verbose_level
from ..utils.validation import BadInputError, check_option, check_path, check_positive_int
from ._trials import Trials
from .manifests import get_manifest

__all__ = [
    "THINGS_EEG2_PARTITIONS",
    "THINGS_EEG2_VARIANTS",
    "load_things_eeg2",
    "load_things_eeg2_raw",
    "read_things_eeg2_images",
]

THINGS_EEG2_VARIANTS = ("official", "250hz")
THINGS_EEG2_PARTITIONS = ("training", "test")
#: Value of the stim channel for target (catch) trials, which are not image conditions.
CATCH_EVENT = 99999
#: Test repetitions of one recording session (eeg_encoding keeps at most 20 per session).
TEST_REPEATS_ONE_SESSION = 20
_IMAGE_EXT = (".jpg", ".jpeg", ".png")
_CONCEPT_DIR = re.compile(r"^\d+_(.+)$")

_HOW_TO_GET = (
    "THINGS-EEG2 is not downloaded automatically: get the preprocessed EEG data, the raw EEG "
    "data and the image set from OSF project 3jk45 (osf.io/3jk45) and unpack them below one "
    "folder (eeg_dataset/preprocessed_data/sub-XX/, eeg_dataset/raw_data/sub-XX/ses-YY/, "
    "image_set/), then pass that folder as data_dir."
)


def _expected(variant: str) -> dict:
    """Expected shapes from the manifest's ``expected:`` block (for one variant)."""
    exp = get_manifest("things_eeg2").get("expected") or {}
    try:
        return {
            "channels": int(exp[variant]["channels"]),
            "times": int(exp[variant]["times"]),
            "sfreq": float(exp[variant]["sfreq"]),
            "conditions": {k: int(v) for k, v in exp["conditions"].items()},
            "repetitions": {k: int(v) for k, v in exp["repetitions"].items()},
            "subjects": [int(s) for s in get_manifest("things_eeg2")["subjects"]],
        }
    except (KeyError, TypeError, ValueError) as err:
        raise BadInputError(
            f"data_manifests/things_eeg2.yaml: its 'expected' block lacks {err} for variant "
            f"{variant!r}; it needs channels/times/sfreq per variant, conditions and "
            "repetitions per partition."
        ) from None


def _sub(subject: int) -> str:
    return f"sub-{subject:02d}"


def _load_dict(path: Path, keys: Sequence[str]) -> dict:
    """A dict saved with ``np.save`` (0-d object array) or ``pickle.dump``; check its keys."""
    try:
        obj = np.load(path, allow_pickle=True)
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as err:
        raise BadInputError(
            f"Could not read {str(path)!r} as a THINGS-EEG2 .npy dict (np.save or pickle): {err}"
        ) from err
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()  # official release: np.save of a dict
    if not isinstance(obj, dict):
        what = f"an array of shape {obj.shape}" if isinstance(obj, np.ndarray) else type(obj)
        raise BadInputError(
            f"{str(path)!r} holds {what}, expected a dict with the keys {list(keys)}."
        )
    missing = [k for k in keys if k not in obj]
    if missing:
        raise BadInputError(
            f"{str(path)!r} lacks the key(s) {missing}; found {sorted(map(str, obj))}, "
            f"expected {list(keys)}."
        )
    return obj


def _check_subject(subject, allowed: Sequence[int]) -> int:
    subject = check_positive_int("subject", subject)
    return check_option("subject", subject, allowed)


def _preprocessed_file(root: Path, variant: str, subject: int, partition: str) -> Path:
    name = f"preprocessed_eeg_{partition}.npy"
    sub = _sub(subject)
    if variant == "official":
        bases = [root / "eeg_dataset" / "preprocessed_data", root / "preprocessed_data", root]
    else:
        bases = [
            root / "Preprocessed_data_250Hz",
            root / "eeg_dataset" / "Preprocessed_data_250Hz",
            root,
        ]
    candidates = [b / sub / name for b in bases]
    for path in candidates:
        if path.is_file():
            return path
    raise BadInputError(
        f"THINGS-EEG2 ({variant}) file {name!r} of {sub} not found; looked for "
        f"{[str(c) for c in candidates]}. {_HOW_TO_GET}"
    )


def read_things_eeg2_images(image_dir, partition: str) -> tuple[np.ndarray, np.ndarray]:
    """Image conditions of one partition: sorted image paths and their concepts.

    Parameters
    ----------
    image_dir : str | PathLike
        The ``image_set`` folder (holding ``training_images/`` and ``test_images/``).
    partition : 'training' | 'test'

    Returns
    -------
    names : ndarray of str
        ``'<partition>_images/<NNNNN_concept>/<img>.jpg'`` in sorted order: entry ``i`` is
        image condition ``i + 1``.
    concepts : ndarray of str
        The concept of each image (its folder name without the number prefix).
    """
    image_dir = check_path("image_dir", image_dir, kind="dir", hint=_HOW_TO_GET)
    check_option("partition", partition, THINGS_EEG2_PARTITIONS)
    folder = image_dir / f"{partition}_images"
    if not folder.is_dir():
        raise BadInputError(
            f"THINGS-EEG2 image folder {str(folder)!r} does not exist. {_HOW_TO_GET}"
        )
    names = sorted(
        p.relative_to(image_dir).as_posix()
        for p in folder.glob("*/*")
        if p.is_file() and p.suffix.lower() in _IMAGE_EXT
    )
    if not names:
        raise BadInputError(
            f"No image ({'/'.join(_IMAGE_EXT)}) in the concept folders of {str(folder)!r}; "
            f"expected {partition}_images/<NNNNN_concept>/<img>.jpg. {_HOW_TO_GET}"
        )
    concepts = []
    for name in names:
        folder_name = name.split("/")[1]
        match = _CONCEPT_DIR.match(folder_name)
        concepts.append(match.group(1) if match else folder_name)
    return np.asarray(names, dtype=str), np.asarray(concepts, dtype=str)


def load_things_eeg2(
    data_dir,
    subject: int = 1,
    *,
    variant: str = "official",
    split: str | Sequence[str] = ("training", "test"),
    average_repetitions: bool = False,
    image_dir=None,
    verbose=None,
) -> Trials:
    """Load one subject's preprocessed THINGS-EEG2 epochs with their image conditions.

    Parameters
    ----------
    data_dir : str | PathLike
        Folder holding ``eeg_dataset/preprocessed_data/`` (official) or
        ``Preprocessed_data_250Hz/`` (250 Hz variant), and ``image_set/``.
    subject : int
        1–10.
    variant : 'official' | '250hz'
        ``'official'``: the OSF release (17 channels, 100 Hz, -0.2…0.8 s); ``'250hz'``: the
        NICE/ATM re-preprocessing (63 channels, 250 Hz, 0…1 s).
    split : str | sequence of str
        Partitions to load: ``'training'``, ``'test'`` or both.
    average_repetitions : bool
        Average each condition's repetitions (one trial per image, the usual zero-shot
        evaluation) instead of returning every repetition.
    image_dir : str | PathLike | None
        The ``image_set`` folder; None = ``data_dir/image_set``.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_trials, n_channels, n_times), condition-major (all repetitions of
        condition 1, then of condition 2, ...), or (n_conditions, n_channels, n_times) when
        averaged. ``stimulus_ids`` index ``info['stimulus_names']`` (training images in
        sorted order, then test images); ``split`` is ``'train'``/``'test'``; ``repeat`` is
        the repetition index (0 when averaged); ``session`` is 0 because the release shuffles
        repetitions across sessions. ``info`` holds ``ch_names``, ``sfreq``, ``times`` (as
        many as samples), ``stimulus_concepts`` and the files read.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        return _load_things_eeg2(data_dir, subject, variant, split, average_repetitions, image_dir)
    finally:
        logger.setLevel(old_level)


def _partitions(split) -> list[str]:
    if isinstance(split, str):
        split = (split,)
    if not hasattr(split, "__iter__"):
        raise BadInputError(
            f"split must be 'training', 'test' or a sequence of them, got {split!r}."
        )
    parts = [check_option("split", s, THINGS_EEG2_PARTITIONS) for s in split]
    if not parts:
        raise BadInputError("split is empty; pass 'training', 'test' or both.")
    return [p for p in THINGS_EEG2_PARTITIONS if p in parts]


def _fix_times(times, n_times: int, path: Path, variant: str) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(times) == n_times:
        return times
    if len(times) > n_times:
        # The 250 Hz files keep all 300 times from -0.2 s for data cropped to 0-1 s.
        logger.info(
            "%s: 'times' has %d entries for %d samples (%s variant, data cropped to the end); "
            "using times[%d:] (%.3f … %.3f s).",
            path.name,
            len(times),
            n_times,
            variant,
            len(times) - n_times,
            times[len(times) - n_times],
            times[-1],
        )
        return times[len(times) - n_times :]
    raise BadInputError(
        f"{str(path)!r}: 'times' has {len(times)} entries but the data have {n_times} samples; "
        "expected at least one time per sample."
    )


def _read_partition(path: Path, partition: str, variant: str, exp: dict):
    obj = _load_dict(path, ("preprocessed_eeg_data", "ch_names", "times"))
    data = obj["preprocessed_eeg_data"]
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        shape = getattr(data, "shape", type(data).__name__)
        raise BadInputError(
            f"{str(path)!r}: 'preprocessed_eeg_data' must be a 4-D array (condition, "
            f"repetition, channel, time), got {shape}."
        )
    n_cond, n_rep, n_ch, n_t = data.shape
    want_cond = exp["conditions"][partition]
    want_rep = exp["repetitions"][partition]
    want_shape = (want_cond, want_rep, exp["channels"], exp["times"])
    other = "250hz" if variant == "official" else "official"
    if (n_ch, n_t) != (exp["channels"], exp["times"]):
        raise BadInputError(
            f"{str(path)!r} has {n_ch} channels × {n_t} samples but the {variant!r} variant "
            f"expects {exp['channels']} × {exp['times']} (shape {want_shape}). If these are the "
            f"files of the other release, pass variant={other!r}."
        )
    if n_cond != want_cond:
        raise BadInputError(
            f"{str(path)!r} holds {n_cond} image conditions but the {partition} partition of "
            f"THINGS-EEG2 has {want_cond} (expected shape {want_shape}); the file is incomplete "
            "or belongs to another dataset."
        )
    if n_rep != want_rep:
        if partition == "test" and n_rep == TEST_REPEATS_ONE_SESSION:
            logger.warning(
                "%s has %d test repetitions per condition, not the %d of the OSF release "
                "(4 sessions × 20): this is a one-session preprocessing (eeg_encoding keeps at "
                "most 20 test repetitions per session; see gifale95/eeg_encoding#9). Loading it.",
                path,
                n_rep,
                want_rep,
            )
        else:
            raise BadInputError(
                f"{str(path)!r} holds {n_rep} repetitions per condition but the {partition} "
                f"partition has {want_rep} (expected shape {want_shape})."
            )
    ch_names = [str(c) for c in obj["ch_names"]]
    if len(ch_names) != n_ch:
        raise BadInputError(
            f"{str(path)!r}: 'ch_names' has {len(ch_names)} names for {n_ch} channels."
        )
    times = _fix_times(obj["times"], n_t, path, variant)
    return data, ch_names, times


def _load_things_eeg2(data_dir, subject, variant, split, average_repetitions, image_dir):
    check_option("variant", variant, THINGS_EEG2_VARIANTS)
    if not isinstance(average_repetitions, (bool, np.bool_)):
        raise BadInputError(
            f"average_repetitions must be True or False, got {average_repetitions!r}."
        )
    parts = _partitions(split)
    exp = _expected(variant)
    subject = _check_subject(subject, exp["subjects"])
    root = check_path("data_dir", data_dir, kind="dir", hint=_HOW_TO_GET)
    image_dir = root / "image_set" if image_dir is None else image_dir
    image_dir = check_path("image_dir", image_dir, kind="dir", hint=_HOW_TO_GET)

    # Stimulus table: training images then test images, each in sorted path order.
    tables = {p: read_things_eeg2_images(image_dir, p) for p in THINGS_EEG2_PARTITIONS}
    for p, (names, _) in tables.items():
        if len(names) != exp["conditions"][p]:
            raise BadInputError(
                f"{str(image_dir / (p + '_images'))!r} holds {len(names)} images but the {p} "
                f"partition has {exp['conditions'][p]} image conditions; the image set is "
                "incomplete or a different one (conditions are matched to sorted image paths)."
            )
    shared = sorted(str(c) for c in set(tables["training"][1]) & set(tables["test"][1]))
    if shared:
        raise BadInputError(
            f"THINGS-EEG2 training and test concepts must be disjoint, but {len(shared)} "
            f"concept(s) are in both folders of {str(image_dir)!r}: {shared[:5]}."
        )
    stim_names = np.concatenate([tables["training"][0], tables["test"][0]])
    stim_concepts = np.concatenate([tables["training"][1], tables["test"][1]])
    offset = {"training": 0, "test": len(tables["training"][0])}

    Xs, ids, splits, repeats = [], [], [], []
    files, ch_names, times, n_reps = {}, None, None, {}
    for p in parts:
        path = _preprocessed_file(root, variant, subject, p)
        data, names_p, times_p = _read_partition(path, p, variant, exp)
        if ch_names is not None and names_p != ch_names:
            raise BadInputError(
                f"{str(path)!r} has channels {names_p[:5]}… but {files[parts[0]]!r} has "
                f"{ch_names[:5]}…; both partitions must share their channels."
            )
        ch_names, times = names_p, times_p
        n_cond, n_rep = data.shape[:2]
        n_reps[p] = int(n_rep)
        cond = np.arange(n_cond) + offset[p]
        if average_repetitions:
            X = data.mean(axis=1, dtype=np.float64).astype(np.float32)
            ids.append(cond)
            repeats.append(np.zeros(n_cond, dtype=np.int64))
        else:
            X = np.asarray(data, dtype=np.float32).reshape(n_cond * n_rep, *data.shape[2:])
            ids.append(np.repeat(cond, n_rep))
            repeats.append(np.tile(np.arange(n_rep), n_cond))
        del data
        Xs.append(X)
        splits.append(np.full(len(X), "train" if p == "training" else "test"))
        files[p] = str(path)
        logger.debug("read %s: %d conditions × %d repetitions", path, n_cond, n_rep)
    X = Xs[0] if len(Xs) == 1 else np.concatenate(Xs)
    del Xs
    ids = np.concatenate(ids)
    sfreq = float(exp["sfreq"])
    info = {
        "dataset": "things_eeg2",
        "variant": variant,
        "units": "MVNN-whitened (unitless)" if variant == "official" else "as preprocessed (NICE)",
        "ch_names": ch_names,
        "sfreq": sfreq,
        "times": times,
        "tmin": float(times[0]),
        "partitions": parts,
        "n_repetitions": n_reps,
        "average_repetitions": bool(average_repetitions),
        "session_note": "session = 0: the release shuffles repetitions across sessions",
        "stimulus_names": stim_names,
        "stimulus_concepts": stim_concepts,
        "stimulus_partition": np.where(
            np.arange(len(stim_names)) < offset["test"], "training", "test"
        ),
        "files": {"preprocessed": files, "image_dir": str(image_dir)},
    }
    trials = Trials(
        X=X,
        stimulus_ids=ids,
        split=np.concatenate(splits),
        session=np.zeros(len(ids), dtype=np.int64),
        repeat=np.concatenate(repeats),
        subject=subject,
        info=info,
    )
    logger.info("Loaded %r", trials)
    return trials


def _raw_file(root: Path, subject: int, session: int, partition: str) -> Path:
    name = f"raw_eeg_{partition}.npy"
    rel = Path(_sub(subject)) / f"ses-{session:02d}" / name
    candidates = [root / "eeg_dataset" / "raw_data" / rel, root / "raw_data" / rel, root / rel]
    for path in candidates:
        if path.is_file():
            return path
    raise BadInputError(
        f"THINGS-EEG2 raw file {name!r} of {_sub(subject)} session {session} not found; looked "
        f"for {[str(c) for c in candidates]}. {_HOW_TO_GET}"
    )


def load_things_eeg2_raw(data_dir, subject: int, session: int, partition: str, *, verbose=None):
    """One raw THINGS-EEG2 recording as an MNE Raw, with its image-condition events.

    Parameters
    ----------
    data_dir : str | PathLike
        Folder holding ``eeg_dataset/raw_data/sub-XX/ses-YY/raw_eeg_{partition}.npy``.
    subject : int
        1–10.
    session : int
        1–4.
    partition : 'training' | 'test'
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    raw : mne.io.RawArray
        All channels of the file (EEG in volts and the ``stim`` channel), with the file's
        ``sfreq``, ``highpass`` and ``lowpass``.
    events : ndarray of int, shape (n_events, 3)
        Onset sample, 0, image condition (**1-based** within the partition); target (catch)
        events (stim value 99999) are dropped.
    event_id : dict
        ``{'training/00001': 1, ...}`` for the conditions present.
    """
    import mne

    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        check_option("partition", partition, THINGS_EEG2_PARTITIONS)
        exp = _expected("official")
        subject = _check_subject(subject, exp["subjects"])
        session = check_positive_int("session", session)
        check_option("session", session, range(1, 5))
        root = check_path("data_dir", data_dir, kind="dir", hint=_HOW_TO_GET)
        path = _raw_file(root, subject, session, partition)
        obj = _load_dict(path, ("raw_eeg_data", "ch_names", "ch_types", "sfreq"))
        data = np.asarray(obj["raw_eeg_data"])
        ch_names = [str(c) for c in obj["ch_names"]]
        ch_types = [str(c) for c in obj["ch_types"]]
        if data.ndim != 2 or data.shape[0] != len(ch_names) or len(ch_types) != len(ch_names):
            raise BadInputError(
                f"{str(path)!r}: 'raw_eeg_data' has shape {data.shape} with {len(ch_names)} "
                f"channel names and {len(ch_types)} channel types; expected (n_channels, "
                "n_samples) with one name and type per row."
            )
        if "stim" not in ch_names:
            raise BadInputError(
                f"{str(path)!r} has no 'stim' channel (channels end with {ch_names[-3:]}); "
                "expected the event row named 'stim'."
            )
        sfreq = float(obj["sfreq"])
        info = mne.create_info(ch_names, sfreq, ch_types, verbose=False)
        raw = mne.io.RawArray(data, info, verbose=False)
        with raw.info._unlock():
            if obj.get("highpass") is not None:
                raw.info["highpass"] = float(obj["highpass"])
            if obj.get("lowpass") is not None:
                raw.info["lowpass"] = min(float(obj["lowpass"]), sfreq / 2)
        events = mne.find_events(raw, stim_channel="stim", shortest_event=1, verbose=False)
        catch = events[:, 2] == CATCH_EVENT
        events = events[~catch]
        n_max = _expected("official")["conditions"][partition]
        bad = (events[:, 2] < 1) | (events[:, 2] > n_max)
        if bad.any():
            raise BadInputError(
                f"{str(path)!r}: stim values {np.unique(events[bad, 2])[:5].tolist()} are not "
                f"image conditions of the {partition} partition (expected 1..{n_max} or "
                f"{CATCH_EVENT} for targets)."
            )
        event_id = {f"{partition}/{c:05d}": int(c) for c in np.unique(events[:, 2])}
        logger.info(
            "%s: %d image events, %d target (catch) events dropped, %d channels at %g Hz.",
            path.name,
            len(events),
            int(catch.sum()),
            len(ch_names),
            sfreq,
        )
        return raw, events, event_id
    finally:
        logger.setLevel(old_level)
