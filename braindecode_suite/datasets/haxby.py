"""Haxby et al. (2001) adapter: the nilearn/PyMVPA layout and the OpenfMRI layout.

Layouts read (see ``shared/DATASET_FORMATS.md`` §6):

- nilearn ``fetch_haxby``: ``<data_dir>/haxby2001/subjN/{bold.nii.gz, labels.txt,
  mask4_vt.nii.gz, mask8b_face_vt.nii.gz, ...}``. ``bold.nii.gz`` holds all runs
  concatenated; ``labels.txt`` is space-separated with the header ``labels chunks``,
  one row per volume (``chunks`` = run, 0-based). PyMVPA's ``attributes_literal.txt``
  is the same table without header (``<label> <run>``); :func:`read_haxby_labels`
  reads both.
- OpenfMRI: ``<root>/sub00N/BOLD/task001_runNNN/<bold>.nii.gz`` per run,
  ``<root>/sub00N/model/model001/onsets/task001_runNNN/condNNN.txt`` (FSL 3-column:
  onset s, duration s, weight), ``<root>/models/model001/condition_key.txt``
  (``task001 cond001 house``) and ``<root>/scan_key.txt`` (``TR 2.5``). Volume ``i``
  (acquired at ``i * TR``) takes condition ``c`` when ``onset <= i * TR < onset +
  duration``; other volumes are ``rest``. On subject 1 this gives the labels of
  ``attributes_literal.txt`` exactly.

Both loaders mask with nilearn's ``NiftiMasker`` (optional detrending and z-scoring
within each run) and return one trial per non-rest volume or per block.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..utils.logging import logger, verbose_level
from ..utils.validation import BadInputError, check_option, check_path, check_positive_int
from ._trials import Trials

__all__ = [
    "HAXBY_CATEGORIES",
    "HAXBY_T_R",
    "load_haxby",
    "load_haxby_openfmri",
    "read_haxby_labels",
    "read_haxby_openfmri_labels",
]

#: The eight stimulus categories; their position is the ``stimulus_ids`` value.
HAXBY_CATEGORIES = ("face", "house", "cat", "shoe", "bottle", "scissors", "chair", "scrambledpix")
#: Repetition time (s) of the Haxby 2001 scans.
HAXBY_T_R = 2.5
REST = "rest"

_HOW_TO_GET = (
    "Haxby 2001 is not downloaded automatically: get it with nilearn "
    "(nilearn.datasets.fetch_haxby(data_dir=..., subjects=(N,)), which fills "
    "<data_dir>/haxby2001/subjN/) or from data.pymvpa.org/datasets/haxby2001/, and pass "
    "that data_dir."
)


# ----------------------------------------------------------------------------- labels
def read_haxby_labels(path) -> tuple[np.ndarray, np.ndarray]:
    """Read per-volume labels: nilearn's ``labels.txt`` or PyMVPA's ``attributes_literal.txt``.

    Parameters
    ----------
    path : str | PathLike
        Whitespace-separated, one row per volume: ``<label> <run>``; an optional first
        row ``labels chunks`` is the header of nilearn's file.

    Returns
    -------
    labels : ndarray of str, shape (n_volumes,)
        ``'rest'`` or a category name.
    chunks : ndarray of int64, shape (n_volumes,)
        Run of each volume as the file numbers it (0-based in both files).
    """
    path = check_path("path", path, kind="file", hint=_HOW_TO_GET)
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if lines and [t.lower() for t in lines[0]] == ["labels", "chunks"]:
        lines = lines[1:]
    if not lines:
        raise BadInputError(f"{str(path)!r} holds no label row.")
    bad = [i for i, row in enumerate(lines) if len(row) != 2 or not _is_int(row[1])]
    if bad:
        raise BadInputError(
            f"{str(path)!r} row {bad[0] + 1} is {' '.join(lines[bad[0]])!r}; every row must "
            "be '<label> <run>' (run an integer), optionally after a 'labels chunks' header."
        )
    labels = np.array([row[0] for row in lines])
    chunks = np.array([int(float(row[1])) for row in lines], dtype=np.int64)
    return labels, chunks


def _is_int(text: str) -> bool:
    try:
        return float(text) == int(float(text))
    except ValueError:
        return False


def _read_key_file(path: Path, n_fields: int) -> list[list[str]]:
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    bad = [r for r in rows if len(r) < n_fields]
    if bad:
        raise BadInputError(
            f"{str(path)!r}: row {' '.join(bad[0])!r} has fewer than {n_fields} fields."
        )
    return rows


def _read_fsl_onsets(path: Path) -> list[tuple[float, float, float]]:
    """FSL 3-column onsets (onset s, duration s, weight); an empty file has none."""
    events = []
    for i, line in enumerate(path.read_text().splitlines()):
        fields = line.split()
        if not fields:
            continue
        try:
            values = tuple(float(v) for v in fields)
        except ValueError:
            values = ()
        if len(values) != 3:
            raise BadInputError(
                f"{str(path)!r} line {i + 1} is {line.strip()!r}; FSL onset files have 3 "
                "numbers per line (onset, duration, weight)."
            )
        events.append(values)
    return events


def _openfmri_t_r(root: Path) -> float:
    path = root / "scan_key.txt"
    if not path.is_file():
        logger.info("%s not found; using the Haxby TR of %.1f s.", path, HAXBY_T_R)
        return HAXBY_T_R
    for row in _read_key_file(path, 2):
        if row[0] == "TR":
            return float(row[1])
    raise BadInputError(f"{str(path)!r} has no 'TR <seconds>' row.")


def _openfmri_runs(sub_dir: Path, task: int) -> list[int]:
    prefix = f"task{task:03d}_run"
    runs = sorted(
        int(p.name[len(prefix) :])
        for p in (sub_dir / "BOLD").glob(f"{prefix}*")
        if p.is_dir() and p.name[len(prefix) :].isdigit()
    )
    if not runs:
        raise BadInputError(
            f"No run folder {prefix}NNN in {str(sub_dir / 'BOLD')!r}; expected the OpenfMRI "
            "layout sub00N/BOLD/task001_runNNN/."
        )
    return runs


def read_haxby_openfmri_labels(
    root, subject: int = 1, *, task: int = 1, model: int = 1, bold: str = "bold_25mm"
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-volume labels of an OpenfMRI Haxby subject, derived from the FSL onsets.

    Parameters
    ----------
    root : str | PathLike
        Folder holding ``sub00N/``, ``models/`` and ``scan_key.txt``.
    subject, task, model : int
        Numbers in ``sub{subject:03d}``, ``task{task:03d}``, ``model{model:03d}``.
    bold : str
        BOLD file name (without ``.nii.gz``) whose header gives each run's volume count.

    Returns
    -------
    labels : ndarray of str, shape (n_volumes,)
        All runs concatenated; ``'rest'`` outside every condition's blocks.
    runs : ndarray of int64, shape (n_volumes,)
        Run number as the folders count it (1-based).
    t_r : float
        From ``scan_key.txt``.
    """
    import nibabel as nib

    root = check_path("root", root, kind="dir", hint=_HOW_TO_GET)
    subject = check_positive_int("subject", subject)
    task = check_positive_int("task", task)
    model = check_positive_int("model", model)
    sub_dir = root / f"sub{subject:03d}"
    if not sub_dir.is_dir():
        found = sorted(p.name for p in root.glob("sub*"))
        raise BadInputError(f"OpenfMRI subject folder {str(sub_dir)!r} not found (found {found}).")
    t_r = _openfmri_t_r(root)
    key_path = root / "models" / f"model{model:03d}" / "condition_key.txt"
    if not key_path.is_file():
        raise BadInputError(f"condition key not found: {str(key_path)!r}.")
    conditions = {r[1]: r[2] for r in _read_key_file(key_path, 3) if r[0] == f"task{task:03d}"}
    if not conditions:
        raise BadInputError(f"{str(key_path)!r} lists no condition of task{task:03d}.")
    labels, runs = [], []
    for run in _openfmri_runs(sub_dir, task):
        name = f"task{task:03d}_run{run:03d}"
        img_path = sub_dir / "BOLD" / name / f"{bold}.nii.gz"
        if not img_path.is_file():
            raise BadInputError(f"BOLD file not found: {str(img_path)!r} (bold={bold!r}).")
        shape = nib.load(img_path).shape
        n_vol = shape[3] if len(shape) == 4 else 1
        times = np.arange(n_vol) * t_r
        lab = np.full(n_vol, REST, dtype=object)
        onset_dir = sub_dir / "model" / f"model{model:03d}" / "onsets" / name
        for cond, cname in sorted(conditions.items()):
            cpath = onset_dir / f"{cond}.txt"
            if not cpath.is_file():
                raise BadInputError(f"onset file not found: {str(cpath)!r} ({cname}).")
            ev = _read_fsl_onsets(cpath)
            for onset, duration, _ in ev:
                inside = (times >= onset - 1e-6) & (times < onset + duration - 1e-6)
                clash = inside & (lab != REST)
                if clash.any():
                    raise BadInputError(
                        f"{name}: volume {int(np.flatnonzero(clash)[0])} falls in blocks of "
                        f"{lab[clash][0]!r} and {cname!r}; onsets overlap."
                    )
                lab[inside] = cname
        labels.append(lab.astype(str))
        runs.append(np.full(n_vol, run, dtype=np.int64))
    return np.concatenate(labels), np.concatenate(runs), t_r


# ----------------------------------------------------------------------------- masking
def _load_mask(mask, folder: Path, reference):
    """A mask image from a name in ``folder``, a path, an image, or None (every voxel)."""
    import nibabel as nib

    if mask is None:
        shape = reference.shape[:3]
        return nib.Nifti1Image(np.ones(shape, dtype=np.uint8), reference.affine), None
    if isinstance(mask, nib.spatialimages.SpatialImage):
        return mask, None
    if not isinstance(mask, (str, os.PathLike)):
        raise BadInputError(
            f"mask must be None, a mask name, a path or a NIfTI image, got {type(mask).__name__}."
        )
    candidates = [Path(mask).expanduser(), folder / f"{mask}.nii.gz", folder / str(mask)]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        found = sorted(p.name.replace(".nii.gz", "") for p in folder.glob("*.nii.gz"))
        raise BadInputError(
            f"mask {str(mask)!r} not found as a file nor as {str(candidates[1])!r}; "
            f"NIfTI files in that folder: {found}."
        )
    return nib.load(path), path


def _mask_volumes(img, mask_img, runs, *, detrend, standardize, t_r) -> np.ndarray:
    from nilearn.maskers import NiftiMasker

    masker = NiftiMasker(
        mask_img=mask_img,
        runs=runs,
        detrend=detrend,
        standardize="zscore_sample" if standardize else None,
        t_r=t_r,
    )
    try:
        X = masker.fit_transform(img)
    except ValueError as err:
        raise BadInputError(f"Masking the BOLD data failed: {err}") from err
    return np.asarray(X, dtype=np.float32)


def _check_flags(unit, include_rest, detrend, standardize):
    check_option("unit", unit, ("volume", "block"))
    for name, value in (
        ("include_rest", include_rest),
        ("detrend", detrend),
        ("standardize", standardize),
    ):
        if not isinstance(value, bool):
            raise BadInputError(f"{name} must be True or False, got {value!r}.")


def _to_trials(X, labels, runs, *, unit, include_rest, subject, info) -> Trials:
    """Volumes (n_volumes, n_voxels) + labels → one trial per volume or per block."""
    names = list(HAXBY_CATEGORIES)
    names += sorted(set(labels) - set(names) - {REST})
    if include_rest:
        names.append(REST)
    code = {n: i for i, n in enumerate(names)}
    if unit == "volume":
        keep = np.array([lab in code for lab in labels])
        Xt, lab_t, run_t = X[keep], labels[keep], runs[keep]
    else:
        # a block = consecutive volumes of one label within one run
        change = np.r_[True, (labels[1:] != labels[:-1]) | (runs[1:] != runs[:-1])]
        starts = np.flatnonzero(change)
        ends = np.r_[starts[1:], len(labels)]
        blocks = [(s, e) for s, e in zip(starts, ends, strict=True) if labels[s] in code]
        Xt = np.stack([X[s:e].mean(axis=0) for s, e in blocks]).astype(np.float32)
        lab_t = np.array([labels[s] for s, _ in blocks])
        run_t = np.array([runs[s] for s, _ in blocks], dtype=np.int64)
        info["block_n_volumes"] = [int(e - s) for s, e in blocks]
    stim = np.array([code[lab] for lab in lab_t], dtype=np.int64)
    repeat = np.zeros(len(stim), dtype=np.int64)
    counts: dict[int, int] = {}
    for i, s in enumerate(stim):
        repeat[i] = counts.get(int(s), 0)
        counts[int(s)] = repeat[i] + 1
    info["stimulus_names"] = names
    trials = Trials(
        X=Xt,
        stimulus_ids=stim,
        split=np.full(len(stim), "train"),
        session=np.ones(len(stim), dtype=np.int64),
        repeat=repeat,
        subject=subject,
        info=info,
        run=run_t,
    )
    logger.info("Loaded %r", trials)
    return trials


# ----------------------------------------------------------------------------- loaders
def _subject_dir(data_dir: Path, subject: int, bold: str) -> Path:
    for folder in (data_dir / "haxby2001" / f"subj{subject}", data_dir / f"subj{subject}"):
        if folder.is_dir():
            return folder
    if (data_dir / bold).is_file():  # a flat subject folder (e.g. PyMVPA's slice/)
        return data_dir
    raise BadInputError(
        f"Haxby subject {subject} not found under {str(data_dir)!r}: expected "
        f"haxby2001/subj{subject}/ (nilearn layout), subj{subject}/, or a folder holding "
        f"{bold!r}. {_HOW_TO_GET}"
    )


def load_haxby(
    data_dir,
    subject: int = 1,
    *,
    mask="mask4_vt",
    labels=None,
    bold: str = "bold.nii.gz",
    unit: str = "volume",
    include_rest: bool = False,
    detrend: bool = False,
    standardize: bool = False,
    t_r: float = HAXBY_T_R,
    verbose=None,
) -> Trials:
    """Load a Haxby 2001 subject from the nilearn/PyMVPA layout.

    Parameters
    ----------
    data_dir : str | PathLike
        Folder holding ``haxby2001/subjN/`` (nilearn's ``data_dir``), or ``subjN/``, or a
        subject folder itself (one holding ``bold``, e.g. PyMVPA's ``slice/`` example).
    subject : int
        Subject number (1–6).
    mask : str | PathLike | nibabel image | None
        A mask name in the subject folder (``'mask4_vt'``, ``'mask8b_face_vt'``,
        ``'mask'`` ...), a NIfTI path or image, or None for every voxel.
    labels : str | PathLike | None
        Label file, relative to the subject folder or a path; nilearn's ``labels.txt``
        or PyMVPA's ``attributes_literal.txt`` (:func:`read_haxby_labels`). None: the
        first of those two that exists.
    bold : str
        BOLD file name in the subject folder.
    unit : 'volume' | 'block'
        One trial per labelled volume, or per block (the mean of consecutive volumes of
        one label within a run).
    include_rest : bool
        Keep ``'rest'`` volumes/blocks as a ninth stimulus.
    detrend, standardize : bool
        Linear detrending / z-scoring of each voxel within each run (``NiftiMasker``
        with ``runs=``), before trials are formed.
    t_r : float
        Repetition time in seconds (2.5 s in this dataset).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_trials, n_voxels); ``stimulus_ids`` index
        ``info['stimulus_names']`` (:data:`HAXBY_CATEGORIES`, then any other label, then
        ``'rest'`` if included); ``run`` 1-based (the file's 0-based chunk + 1, as the
        OpenfMRI folders count); ``session`` 1; ``split`` ``'train'`` (there is no
        official split: cross-validate over runs); ``repeat`` = earlier trials of the
        same category. ``info``: dataset, subject, t_r, unit, n_voxels, voxel_ijk,
        affine, files.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        import nibabel as nib

        data_dir = check_path("data_dir", data_dir, kind="dir", hint=_HOW_TO_GET)
        subject = check_positive_int("subject", subject)
        _check_flags(unit, include_rest, detrend, standardize)
        folder = _subject_dir(data_dir, subject, bold)
        bold_path = check_path("bold", folder / bold, kind="file", hint=_HOW_TO_GET)
        if labels is None:
            options = [folder / "labels.txt", folder / "attributes_literal.txt"]
            label_path = next((p for p in options if p.is_file()), None)
            if label_path is None:
                raise BadInputError(
                    f"No label file in {str(folder)!r} (looked for labels.txt and "
                    f"attributes_literal.txt); pass labels=... {_HOW_TO_GET}"
                )
        else:
            check_path("labels", labels, must_exist=False)
            label_path = (
                Path(labels) if Path(labels).is_absolute() else folder / labels
            ).expanduser()
        label_arr, chunks = read_haxby_labels(label_path)
        img = nib.load(bold_path)
        n_vol = img.shape[3] if len(img.shape) == 4 else 1
        if n_vol != len(label_arr):
            raise BadInputError(
                f"{str(label_path)!r} has {len(label_arr)} rows but {str(bold_path)!r} has "
                f"{n_vol} volumes; each volume needs one label row."
            )
        mask_img, mask_path = _load_mask(mask, folder, img)
        runs = chunks + 1
        X = _mask_volumes(img, mask_img, runs, detrend=detrend, standardize=standardize, t_r=t_r)
        mask_data = np.asarray(mask_img.dataobj)
        info = {
            "dataset": "haxby2001",
            "layout": "nilearn",
            "subject": subject,
            "t_r": float(t_r),
            "unit": unit,
            "detrend": detrend,
            "standardize": standardize,
            "n_voxels": int(X.shape[1]),
            "voxel_ijk": np.argwhere(mask_data != 0),
            "affine": np.asarray(mask_img.affine),
            "files": {
                "bold": str(bold_path),
                "labels": str(label_path),
                "mask": None if mask_path is None else str(mask_path),
            },
        }
        return _to_trials(
            X, label_arr, runs, unit=unit, include_rest=include_rest, subject=subject, info=info
        )
    finally:
        logger.setLevel(old_level)


def load_haxby_openfmri(
    root,
    subject: int = 1,
    *,
    bold: str = "bold_25mm",
    mask="vt",
    task: int = 1,
    model: int = 1,
    unit: str = "volume",
    include_rest: bool = False,
    detrend: bool = False,
    standardize: bool = False,
    verbose=None,
) -> Trials:
    """Load a Haxby 2001 subject from the OpenfMRI layout (labels from FSL onsets).

    Parameters
    ----------
    root : str | PathLike
        Folder holding ``sub00N/``, ``models/`` and ``scan_key.txt``.
    subject : int
        Subject number (``sub{subject:03d}``).
    bold : str
        BOLD file of each run, without ``.nii.gz`` (``'bold_25mm'``, ``'bold_1slice'``).
    mask : str | PathLike | nibabel image | None
        A mask name in ``sub00N/masks/25mm/`` (``'vt'``, ``'brain'``, ``'gray'`` ...;
        these match ``bold_25mm``), a NIfTI path or image, or None for every voxel.
    task, model : int
        ``task{task:03d}`` runs and ``model{model:03d}`` onsets/condition key.
    unit, include_rest, detrend, standardize, verbose
        As in :func:`load_haxby`.

    Returns
    -------
    trials : Trials
        As :func:`load_haxby` (same labels, runs 1-based); ``info['t_r']`` from
        ``scan_key.txt``.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        from nilearn.image import concat_imgs

        _check_flags(unit, include_rest, detrend, standardize)
        labels, runs, t_r = read_haxby_openfmri_labels(
            root, subject, task=task, model=model, bold=bold
        )
        root = Path(root).expanduser()
        sub_dir = root / f"sub{subject:03d}"
        paths = [
            sub_dir / "BOLD" / f"task{task:03d}_run{r:03d}" / f"{bold}.nii.gz"
            for r in np.unique(runs)
        ]
        img = concat_imgs([str(p) for p in paths])
        mask_img, mask_path = _load_mask(mask, sub_dir / "masks" / "25mm", img)
        X = _mask_volumes(img, mask_img, runs, detrend=detrend, standardize=standardize, t_r=t_r)
        info = {
            "dataset": "haxby2001",
            "layout": "openfmri",
            "subject": subject,
            "t_r": float(t_r),
            "unit": unit,
            "detrend": detrend,
            "standardize": standardize,
            "n_voxels": int(X.shape[1]),
            "voxel_ijk": np.argwhere(np.asarray(mask_img.dataobj) != 0),
            "affine": np.asarray(mask_img.affine),
            "files": {
                "bold": [str(p) for p in paths],
                "onsets": str(sub_dir / "model" / f"model{model:03d}" / "onsets"),
                "mask": None if mask_path is None else str(mask_path),
            },
        }
        return _to_trials(
            X, labels, runs, unit=unit, include_rest=include_rest, subject=subject, info=info
        )
    finally:
        logger.setLevel(old_level)
