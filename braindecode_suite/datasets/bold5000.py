"""BOLD5000 Release 2.0 adapter: single-trial GLMsingle betas of four subjects.

Files read (see ``shared/DATASET_FORMATS.md`` §5), looked up in ``data_dir`` itself, in
``data_dir/CSI{n}``, ``data_dir/sub-CSI{n}`` and ``data_dir/derivatives/spm/sub-CSI{n}``:

- ``CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{SS}.nii.gz``: (X, Y, Z, n_trials) betas of
  one session, **already percent signal change** (no scaling). The README spells the version
  ``TYBEB``; both spellings are accepted (:meth:`BOLD5000Layout.betas` logs which one it found).
- ``CSI{n}_brainmask.nii.gz``: the subject's brain mask on the beta grid.
- ``CSI{n}_imgnames.txt``: one image file name per trial, sessions concatenated in order.
- ``sub-CSI{n}_mask-{LH,RH}{EarlyVis,LOC,OPA,PPA,RSC}.nii.gz``: ROI masks (OpenNeuro ds001499
  ``derivatives/spm``). CSI2/CSI3 name some files ``LO`` (for ``LOC``) and ``RHRRSC`` (for
  ``RHRSC``); both spellings are accepted for every subject.

Each run holds 37 trials, so a trial's run is ``(index within session) // 37 + 1``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils.logging import logger, progress_disabled, verbose_level
from ..utils.validation import BadInputError, check_option, check_path, check_positive_int
from ._trials import Trials

__all__ = [
    "BOLD5000Layout",
    "BOLD5000_ROIS",
    "BOLD5000_SPLITS",
    "load_bold5000",
    "bold5000_stimulus_source",
]

#: Category-selective and early visual ROIs of ds001499 (each the union of LH and RH).
BOLD5000_ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")
#: ``'repeated_test'``: images shown more than once are test (a common convention, not official).
BOLD5000_SPLITS = ("repeated_test", None)
#: Sessions per subject in Release 2.0 (CSI1–3: 15, CSI4: 9).
N_SESSIONS = {1: 15, 2: 15, 3: 15, 4: 9}
TRIALS_PER_RUN = 37
#: Alternative spellings of ROI file stems found in the release (CSI2/CSI3).
_ROI_ALIASES = {
    "LHLOC": ("LHLOC", "LHLO"),
    "RHLOC": ("RHLOC", "RHLO"),
    "RHRSC": ("RHRSC", "RHRRSC"),
}
_IMAGENET = re.compile(r"^n\d{8}_")

_HOW_TO_GET = (
    "BOLD5000 is not downloaded automatically: get Release 2.0 (GLM betas, brain masks and "
    "imgnames files) from Figshare/KiltHub (BOLD5000 collection 5324846) and the ROI masks "
    "from OpenNeuro ds001499 derivatives/spm, put them in one folder (optionally in CSI{n}/ "
    "or sub-CSI{n}/ subfolders) and pass it as data_dir."
)


class BOLD5000Layout:
    """Paths of one BOLD5000 subject's files under ``data_dir``.

    Parameters
    ----------
    data_dir : str | PathLike
        Folder holding the Release 2.0 files (directly or in ``CSI{n}/`` / ``sub-CSI{n}/``).
    subject : int
        1–4 (``CSI1`` … ``CSI4``).
    """

    def __init__(self, data_dir, subject: int):
        self.data_dir = check_path("data_dir", data_dir, must_exist=False)
        subject = check_positive_int("subject", subject)
        self.subject = check_option("subject", subject, range(1, 5))

    @property
    def csi(self) -> str:
        return f"CSI{self.subject}"

    @property
    def search_dirs(self) -> list[Path]:
        """Folders searched for the subject's files, in order."""
        root = self.data_dir
        return [
            root,
            root / self.csi,
            root / f"sub-{self.csi}",
            root / "derivatives" / "spm" / f"sub-{self.csi}",
        ]

    def _find(self, pattern: str) -> list[Path]:
        found: list[Path] = []
        for folder in self.search_dirs:
            if folder.is_dir():
                found.extend(sorted(folder.glob(pattern)))
        return found

    def _first(self, names: Sequence[str]) -> Path | None:
        for name in names:
            hits = self._find(name)
            if hits:
                return hits[0]
        return None

    @property
    def brainmask(self) -> Path | None:
        return self._first([f"{self.csi}_brainmask.nii.gz", f"{self.csi}_brainmask.nii"])

    @property
    def imgnames(self) -> Path | None:
        return self._first([f"{self.csi}_imgnames.txt"])

    def roi_files(self, roi: str) -> list[Path | None]:
        """The LH and RH mask files of ``roi`` (one of :data:`BOLD5000_ROIS`); None if absent."""
        check_option("roi", roi, BOLD5000_ROIS)
        out = []
        for hemi in ("LH", "RH"):
            stems = _ROI_ALIASES.get(hemi + roi, (hemi + roi,))
            out.append(self._first([f"sub-{self.csi}_mask-{s}.nii.gz" for s in stems]))
        return out

    def betas(self, session: int) -> Path | None:
        """Beta file of a session (``TYPED`` preferred over the README's ``TYBEB``), or None."""
        pattern = f"{self.csi}_GLMbetas-TY*-FITHRF-GLMDENOISE-RR_ses-{session:02d}.nii.gz"
        hits = self._find(pattern)
        if not hits:
            return None
        hits.sort(key=lambda p: "TYPED" not in p.name)
        if "TYPED" not in hits[0].name:
            logger.info("BOLD5000: using %s (not the TYPED spelling).", hits[0].name)
        return hits[0]

    def available_sessions(self) -> list[int]:
        """Sorted session numbers whose beta file exists."""
        found = set()
        for p in self._find(f"{self.csi}_GLMbetas-TY*-FITHRF-GLMDENOISE-RR_ses-*.nii.gz"):
            digits = p.name.rsplit("_ses-", 1)[1].split(".")[0]
            if digits.isdigit():
                found.add(int(digits))
        return sorted(found)

    def __repr__(self) -> str:
        return f"BOLD5000Layout({str(self.data_dir)!r}, subject={self.subject})"


def bold5000_stimulus_source(names) -> np.ndarray:
    """Image set of BOLD5000 stimulus names: ``'COCO'``, ``'ImageNet'`` or ``'Scene'``.

    COCO names start with ``COCO_`` (``COCO_train2014_000000000036.jpg``), ImageNet names
    with a WordNet id ``n\\d{8}_`` (``n01440764_10110.JPEG``); every other name is a Scene
    image (``airplanecabin1.jpg``). A leading ``rep_`` (used for repeated images in some
    stimulus lists) is ignored.

    Parameters
    ----------
    names : sequence of str

    Returns
    -------
    source : ndarray of str, shape (len(names),)
    """
    out = []
    for name in names:
        base = Path(str(name)).name
        base = base[4:] if base.startswith("rep_") else base
        if base.startswith("COCO_"):
            out.append("COCO")
        elif _IMAGENET.match(base):
            out.append("ImageNet")
        else:
            out.append("Scene")
    return np.asarray(out, dtype=str)


def read_nifti_mask(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D mask (value > 0) and its affine."""
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises several types for corrupt files
        raise BadInputError(f"Could not read {what} {str(path)!r} as NIfTI: {err}") from err
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadInputError(f"{what} {str(path)!r} must be a 3-D volume, got shape {data.shape}.")
    return data > 0, img.affine


def check_same_grid(mask_shape, mask_affine, mask_path, img_shape, img_affine, img_path):
    """Raise when a mask and a beta file are not on the same voxel grid."""
    if tuple(img_shape) != tuple(mask_shape) or not np.allclose(img_affine, mask_affine, atol=1e-3):
        what = "shape" if tuple(img_shape) != tuple(mask_shape) else "affine"
        raise BadInputError(
            f"Mask and betas are on different grids ({what} differs): mask {str(mask_path)!r} "
            f"has shape {tuple(mask_shape)}, betas {str(img_path)!r} have shape "
            f"{tuple(img_shape)}. Use the mask of the same subject, in the betas' space."
        )


def read_masked_betas(path: Path, ijk: np.ndarray, *, chunk: int = 64) -> np.ndarray:
    """Betas at voxels ``ijk`` of a 4-D NIfTI -> float32 (n_trials, n_voxels).

    Reads ``chunk`` volumes at a time through ``img.dataobj`` so that at most ``chunk`` full
    volumes are in memory at once (never the whole 4-D array).
    """
    import nibabel as nib

    img = nib.load(path, keep_file_open=True)
    n = int(img.shape[3])
    out = np.empty((n, len(ijk)), dtype=np.float32)
    i, j, k = ijk.T
    proxy = img.dataobj
    for t0 in range(0, n, chunk):
        vols = np.asarray(proxy[..., t0 : t0 + chunk])
        out[t0 : t0 + vols.shape[3]] = vols[i, j, k, :].T
    return out


def zscore_rows(X: np.ndarray) -> tuple[np.ndarray, int]:
    """Z-score each column over rows (population std, as ``scipy.stats.zscore``) in place.

    Columns with zero variance become 0 (scipy would give NaN). Returns the array and how
    many such columns there were.
    """
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    flat = ~(std > 0)
    std[flat] = 1.0
    X -= mean.astype(X.dtype)
    X /= std.astype(X.dtype)
    X[:, flat & np.isfinite(mean)] = 0.0
    return X, int((flat & np.isfinite(mean)).sum())


def drop_nan_voxels(X: np.ndarray, ijk: np.ndarray, where: str):
    """Drop voxels (columns) with any non-finite value; log a warning when there are some."""
    bad = ~np.isfinite(X).all(axis=0)
    n_bad = int(bad.sum())
    if n_bad:
        logger.warning(
            "%s: dropping %d of %d voxel(s) with NaN/inf betas (listed in info['nan_voxel_ijk']).",
            where,
            n_bad,
            X.shape[1],
        )
        X = X[:, ~bad]
    return X, ijk[~bad], ijk[bad]


def repeat_index(keys: np.ndarray) -> np.ndarray:
    """0 for the first occurrence of each key in order, 1 for the second, ..."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    first = np.searchsorted(sorted_keys, sorted_keys, side="left")
    out = np.empty(len(keys), dtype=np.int64)
    out[order] = np.arange(len(keys)) - first
    return out


def read_imgnames(path: Path) -> np.ndarray:
    """Image names of ``CSI{n}_imgnames.txt`` (one per line; blank lines ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BadInputError(f"Could not read {str(path)!r} as text: {err}") from err
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise BadInputError(f"{str(path)!r} holds no image name; expected one per trial.")
    return np.asarray(names, dtype=str)


def load_bold5000(
    data_dir,
    subject: int = 1,
    *,
    sessions: Sequence[int] | None = None,
    roi: str = "brainmask",
    zscore_sessions: bool = True,
    split: str | None = "repeated_test",
    verbose=None,
) -> Trials:
    """Load one BOLD5000 subject's single-trial betas, with stimulus names and splits.

    Parameters
    ----------
    data_dir : str | PathLike
        Folder with the Release 2.0 files (see :class:`BOLD5000Layout`).
    subject : int
        1–4.
    sessions : sequence of int | None
        1-based session numbers; None = every session with a beta file.
    roi : str
        ``'brainmask'`` (``CSI{n}_brainmask.nii.gz``) or one of :data:`BOLD5000_ROIS`
        (union of its LH and RH masks).
    zscore_sessions : bool
        Z-score every voxel over the trials of each session (as the BOLD5000 authors
        recommend); False keeps percent signal change.
    split : 'repeated_test' | None
        ``'repeated_test'``: images shown more than once in the whole experiment (the 112
        shown 4× and the one shown 3×) are ``'test'``, all others ``'train'``. This is a
        common convention, not an official split (BOLD5000 has none). None: all ``'train'``.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_trials, n_voxels); ``stimulus_ids`` index
        ``info['stimulus_names']`` (sorted unique image names), with
        ``info['stimulus_source']`` (COCO/ImageNet/Scene) per name; ``repeat`` counts
        earlier showings over the whole ``imgnames`` file (not only the loaded sessions);
        ``run`` = trial index in the session // 37 + 1; ``info`` also holds
        ``voxel_ijk``, ``affine``, dropped NaN voxels and the files read.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        return _load_bold5000(data_dir, subject, sessions, roi, zscore_sessions, split)
    finally:
        logger.setLevel(old_level)


def _require(path: Path | None, what: str, layout: BOLD5000Layout, name: str) -> Path:
    if path is None:
        dirs = [str(d) for d in layout.search_dirs]
        raise BadInputError(f"BOLD5000 {what} {name!r} not found in {dirs}. {_HOW_TO_GET}")
    return path


def _roi_mask(layout: BOLD5000Layout, roi: str):
    check_option("roi", roi, ("brainmask", *BOLD5000_ROIS))
    if roi == "brainmask":
        path = _require(layout.brainmask, "brain mask", layout, f"{layout.csi}_brainmask.nii.gz")
        mask, affine = read_nifti_mask(path, "brain mask")
        return mask, affine, [path]
    paths = []
    for hemi, path in zip(("LH", "RH"), layout.roi_files(roi), strict=True):
        name = f"sub-{layout.csi}_mask-{hemi}{roi}.nii.gz"
        paths.append(_require(path, f"ROI mask ({hemi})", layout, name))
    (lh, lh_affine), (rh, rh_affine) = (read_nifti_mask(p, f"ROI {roi!r}") for p in paths)
    check_same_grid(lh.shape, lh_affine, paths[0], rh.shape, rh_affine, paths[1])
    return lh | rh, lh_affine, paths


def _load_bold5000(data_dir, subject, sessions, roi, zscore_sessions, split):
    import nibabel as nib
    from tqdm.auto import tqdm

    check_option("split", split, BOLD5000_SPLITS)
    if not isinstance(zscore_sessions, (bool, np.bool_)):
        raise BadInputError(f"zscore_sessions must be True or False, got {zscore_sessions!r}.")
    layout = BOLD5000Layout(data_dir, subject)
    if not layout.data_dir.is_dir():
        raise BadInputError(
            f"BOLD5000 data_dir {str(layout.data_dir)!r} does not exist. {_HOW_TO_GET}"
        )
    available = layout.available_sessions()
    if not available:
        raise BadInputError(
            f"No beta files ({layout.csi}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-SS.nii.gz) in "
            f"{[str(d) for d in layout.search_dirs]}. {_HOW_TO_GET}"
        )
    if sessions is None:
        sessions = available
    if isinstance(sessions, (str, bytes)) or not hasattr(sessions, "__iter__"):
        raise BadInputError(
            f"sessions must be a list of session numbers or None, got {sessions!r}."
        )
    sessions = sorted({check_positive_int("sessions", s) for s in sessions})
    if not sessions:
        raise BadInputError("sessions is empty; pass None for all available sessions.")
    missing = [s for s in range(1, max(sessions) + 1) if s not in available]
    if missing:
        raise BadInputError(
            f"Beta file(s) of session(s) {missing} not found (available: {available}). Trials "
            f"are matched to {layout.csi}_imgnames.txt by their position in the concatenated "
            f"sessions, so sessions 1..{max(sessions)} must all be present. {_HOW_TO_GET}"
        )
    # Headers of every session up to the last one present (all of them when the available
    # sessions are 1..N) place each session's trials in the concatenated image list.
    contiguous = available == list(range(1, len(available) + 1))
    upto = len(available) if contiguous else max(sessions)
    files = {s: layout.betas(s) for s in range(1, upto + 1)}
    names_path = _require(layout.imgnames, "image list", layout, f"{layout.csi}_imgnames.txt")
    imgnames = read_imgnames(names_path)

    mask, mask_affine, mask_paths = _roi_mask(layout, roi)
    ijk = np.argwhere(mask)
    if len(ijk) == 0:
        raise BadInputError(f"Mask {[str(p) for p in mask_paths]} has no voxel with value > 0.")

    # Place each session's trials in imgnames: offsets from the headers of sessions 1..max.
    offsets, n_trials = {}, {}
    start = 0
    for s, path in files.items():
        img = nib.load(path)
        if len(img.shape) != 4:
            raise BadInputError(f"{str(path)!r} must be 4-D (X, Y, Z, n_trials), got {img.shape}.")
        n = int(img.shape[3])
        if start + n > len(imgnames):
            raise BadInputError(
                f"Session {s}: {str(path)!r} holds {n} trials but {str(names_path)!r} has only "
                f"{max(len(imgnames) - start, 0)} row(s) left for it (rows {start + 1}.."
                f"{len(imgnames)} of {len(imgnames)}, after sessions 1..{s - 1} took {start}). "
                "The image list must have one row per trial in session order."
            )
        if s in sessions:
            check_same_grid(mask.shape, mask_affine, mask_paths[0], img.shape[:3], img.affine, path)
        if n % TRIALS_PER_RUN:
            logger.warning(
                "Session %d holds %d trials, not a multiple of %d trials per run; run numbers "
                "assume %d trials per run.",
                s, n, TRIALS_PER_RUN, TRIALS_PER_RUN,
            )  # fmt: skip
        offsets[s], n_trials[s] = start, n
        start += n
    if contiguous and start != len(imgnames):
        last = len(available)
        raise BadInputError(
            f"The beta files of sessions 1..{last} hold {start} trials but {str(names_path)!r} "
            f"has {len(imgnames)} rows ({len(imgnames) - start:+d}); session {last}'s "
            f"{n_trials[last]} trials should end the list. A session's trial count must equal "
            "its rows in the image list."
        )

    stim_names, stim_index = np.unique(imgnames, return_inverse=True)
    counts = np.bincount(stim_index, minlength=len(stim_names))
    repeat_all = repeat_index(stim_index)
    test_image = counts > 1 if split == "repeated_test" else np.zeros(len(stim_names), bool)

    total = sum(n_trials[s] for s in sessions)
    X = np.empty((total, len(ijk)), dtype=np.float32)
    rows, session, run = [], [], []
    pos = 0
    n_flat = 0
    bar = tqdm(sessions, desc=f"BOLD5000 {layout.csi} betas", disable=progress_disabled())
    for s in bar:
        n = n_trials[s]
        block = read_masked_betas(files[s], ijk)
        if zscore_sessions:
            block, flat = zscore_rows(block)
            n_flat += flat
        X[pos : pos + n] = block
        pos += n
        rows.append(offsets[s] + np.arange(n))
        session.append(np.full(n, s, dtype=np.int64))
        run.append(np.arange(n) // TRIALS_PER_RUN + 1)
        logger.debug("read %s: %d trials × %d voxels", files[s], n, len(ijk))
    if n_flat:
        logger.info("z-scoring: %d session-voxel(s) with zero variance set to 0.", n_flat)
    rows = np.concatenate(rows)
    X, kept_ijk, nan_ijk = drop_nan_voxels(X, ijk, f"BOLD5000 {layout.csi}")
    ids = stim_index[rows]
    info = {
        "dataset": "bold5000",
        "units": "z-score within session" if zscore_sessions else "percent signal change",
        "roi": roi,
        "split_rule": (
            "test = images shown more than once (common convention, not official)"
            if split == "repeated_test"
            else "all train"
        ),
        "zscore_sessions": bool(zscore_sessions),
        "sessions": sessions,
        "n_voxels": int(len(kept_ijk)),
        "n_nan_voxels_dropped": int(len(nan_ijk)),
        "nan_voxel_ijk": nan_ijk,
        "voxel_ijk": kept_ijk,
        "affine": mask_affine,
        "grid_shape": tuple(int(v) for v in mask.shape),
        "stimulus_names": stim_names,
        "stimulus_source": bold5000_stimulus_source(stim_names),
        "n_presentations": counts,
        "files": {
            "imgnames": str(names_path),
            "mask": [str(p) for p in mask_paths],
            "betas": {int(s): str(files[s]) for s in sessions},
        },
    }
    trials = Trials(
        X=X,
        stimulus_ids=ids,
        split=np.where(test_image[ids], "test", "train"),
        session=np.concatenate(session),
        repeat=repeat_all[rows],
        subject=subject,
        info=info,
        run=np.concatenate(run),
    )
    logger.info("Loaded %r", trials)
    return trials
