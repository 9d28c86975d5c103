"""THINGS-fMRI adapter: single-trial betas of THINGS-data (Hebart et al. 2023), two forms.

Files read under ``data_dir`` (the Figshare+ derivatives, see ``shared/DATASET_FORMATS.md`` §3):

Table form (``form='table'``), in ``betas_csv/``:

- ``sub-XX_ResponseData.h5`` (``pandas.read_hdf``): one row per voxel, columns ``voxel_id``
  then one column per trial (``0 … n_trials-1``); catch trials are not in it.
- ``sub-XX_StimulusMetadata.csv``: one row per trial column: ``trial_type``
  (``train``/``test``), ``session``, ``run``, ``stimulus`` (``dog_12s.jpg``), ``concept``, ...
- ``sub-XX_VoxelMetadata.csv``: one row per voxel: ``voxel_id``, ``voxel_x/y/z`` (indices in
  the brain-mask grid) and 0/1 ROI columns (``V1``, ``lFFA``, ``glasser-*``, ...).

Volume form (``form='volume'``):

- ``betas_vol/sub-XX/ses-thingsNN/sub-XX_ses-thingsNN_run-NN_betas.nii.gz``: (X, Y, Z, n)
  with one volume per trial **including catch trials**, and
  ``..._run-NN_conditions.tsv`` (an unnamed index column and ``image_filename``:
  ``dog/dog_12s.jpg`` or ``catch008.jpg``); catch trials are dropped.
- ``brainmasks/sub-XX_space-T1w_brainmask.nii.gz``: the voxels of the table's rows (in
  C order, as ``nilearn.masking.unmask`` places them).

The volume form has no ``trial_type``; its split rule is ours: a stimulus shown in more
than one session is ``'test'`` (the 100 test images are shown in all 12 sessions, 1,200 test
trials; every training image is shown once).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils.logging import logger, progress_disabled, verbose_level
from ..utils.validation import (
    BadInputError,
    _did_you_mean,
    check_option,
    check_path,
    check_positive_int,
)
from ._trials import Trials
from .bold5000 import (
    check_same_grid,
    drop_nan_voxels,
    read_masked_betas,
    read_nifti_mask,
    repeat_index,
    zscore_rows,
)

__all__ = ["THINGSfMRILayout", "THINGS_FMRI_FORMS", "load_things_fmri"]

THINGS_FMRI_FORMS = ("table", "volume")
STIMULUS_COLUMNS = ("trial_type", "session", "run", "stimulus", "concept")
VOXEL_COLUMNS = ("voxel_id", "voxel_x", "voxel_y", "voxel_z")
_RUN_FILE = re.compile(r"_ses-things(\d+)_run-(\d+)_betas\.nii(\.gz)?$")

_HOW_TO_GET = (
    "THINGS-fMRI is not downloaded automatically: get the THINGS-data derivatives from "
    "Figshare+ (10.25452/figshare.plus.c.6161151): betas_csv.zip for form='table', betas_vol "
    "and brainmasks for form='volume'; unpack them in one folder and pass it as data_dir."
)


class THINGSfMRILayout:
    """Paths of one THINGS-fMRI subject's files under ``data_dir``.

    Parameters
    ----------
    data_dir : str | PathLike
        Folder holding ``betas_csv/``, ``betas_vol/`` and ``brainmasks/``.
    subject : int
        1–3.
    """

    def __init__(self, data_dir, subject: int):
        self.data_dir = check_path("data_dir", data_dir, must_exist=False)
        subject = check_positive_int("subject", subject)
        self.subject = check_option("subject", subject, range(1, 4))

    @property
    def sub(self) -> str:
        return f"sub-{self.subject:02d}"

    @property
    def table_dir(self) -> Path:
        return self.data_dir / "betas_csv"

    @property
    def responses(self) -> Path:
        return self.table_dir / f"{self.sub}_ResponseData.h5"

    @property
    def stimulus_metadata(self) -> Path:
        return self.table_dir / f"{self.sub}_StimulusMetadata.csv"

    @property
    def voxel_metadata(self) -> Path:
        return self.table_dir / f"{self.sub}_VoxelMetadata.csv"

    @property
    def brainmask(self) -> Path:
        return self.data_dir / "brainmasks" / f"{self.sub}_space-T1w_brainmask.nii.gz"

    @property
    def volume_dir(self) -> Path:
        return self.data_dir / "betas_vol" / self.sub

    def run_betas(self, session: int, run: int) -> Path:
        stem = f"{self.sub}_ses-things{session:02d}_run-{run:02d}"
        return self.volume_dir / f"ses-things{session:02d}" / f"{stem}_betas.nii.gz"

    def run_conditions(self, session: int, run: int) -> Path:
        stem = f"{self.sub}_ses-things{session:02d}_run-{run:02d}"
        return self.volume_dir / f"ses-things{session:02d}" / f"{stem}_conditions.tsv"

    def available_runs(self) -> list[tuple[int, int]]:
        """Sorted ``(session, run)`` pairs whose volume beta file exists."""
        found = set()
        if self.volume_dir.is_dir():
            for p in self.volume_dir.glob(f"ses-things*/{self.sub}_ses-things*_run-*_betas.nii*"):
                m = _RUN_FILE.search(p.name)
                if m:
                    found.add((int(m.group(1)), int(m.group(2))))
        return sorted(found)

    def __repr__(self) -> str:
        return f"THINGSfMRILayout({str(self.data_dir)!r}, subject={self.subject})"


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise BadInputError(f"THINGS-fMRI {what} not found: {str(path)!r}. {_HOW_TO_GET}")
    return path


def _read_csv(path: Path, what: str, required: Sequence[str], **kwargs):
    import pandas as pd

    _require(path, what)
    try:
        df = pd.read_csv(path, **kwargs)
    except (OSError, UnicodeDecodeError, ValueError) as err:  # ParserError is a ValueError
        raise BadInputError(f"Could not read {str(path)!r} as CSV/TSV: {err}") from err
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise BadInputError(
            f"{str(path)!r} lacks the column(s) {missing} (found: {list(df.columns)[:12]}); "
            f"expected THINGS-data's {what} with columns {list(required)}."
        )
    return df


def _roi_columns(voxels, roi) -> list[str]:
    """Columns of the VoxelMetadata that make up ``roi`` (a name, ``l``/``r`` pair or list)."""
    names = [roi] if isinstance(roi, str) else roi
    if isinstance(names, (bytes, dict)) or not hasattr(names, "__iter__"):
        raise BadInputError(f"roi must be None, a column name or a list of them, got {roi!r}.")
    names = list(names)
    if not names or not all(isinstance(n, str) for n in names):
        raise BadInputError(f"roi must be None, a column name or a list of them, got {roi!r}.")
    non_roi = set(VOXEL_COLUMNS)
    columns = [c for c in voxels.columns if c not in non_roi]
    out = []
    for name in names:
        if name in columns:
            out.append(name)
        elif f"l{name}" in columns and f"r{name}" in columns:
            out += [f"l{name}", f"r{name}"]  # both hemispheres, e.g. FFA = lFFA | rFFA
        else:
            binary = [c for c in columns if voxels[c].isin((0, 1)).all()]
            shown = ", ".join(repr(c) for c in binary[:30]) + (", ..." if len(binary) > 30 else "")
            raise BadInputError(
                f"roi={name!r} is not a column of the voxel metadata, nor are l{name!r} and "
                f"r{name!r}. Its ROI (0/1) columns are {shown}.{_did_you_mean(name, binary)}"
            )
    return out


def _roi_rows(voxels, roi, path: Path) -> np.ndarray:
    cols = _roi_columns(voxels, roi)
    values = voxels[cols].to_numpy()
    if values.dtype.kind not in "biuf":
        raise BadInputError(
            f"{str(path)!r}: ROI column(s) {cols} must hold 0/1, got {values.dtype}."
        )
    rows = np.flatnonzero(np.nan_to_num(values.astype(float)).astype(bool).any(axis=1))
    if len(rows) == 0:
        raise BadInputError(f"roi={roi!r}: no voxel of {str(path)!r} lies in column(s) {cols}.")
    return rows


def load_things_fmri(
    data_dir,
    subject: int = 1,
    *,
    form: str = "table",
    roi: str | Sequence[str] | None = None,
    sessions: Sequence[int] | None = None,
    zscore_sessions: bool = False,
    verbose=None,
) -> Trials:
    """Load one THINGS-fMRI subject's single-trial betas (table or volume form).

    Parameters
    ----------
    data_dir : str | PathLike
        Folder holding ``betas_csv/`` (table form) or ``betas_vol/`` + ``brainmasks/``
        (volume form); see :class:`THINGSfMRILayout`.
    subject : int
        1–3.
    form : 'table' | 'volume'
        ``'table'`` reads ``sub-XX_ResponseData.h5`` with its metadata CSVs (the whole
        table is read by ``pandas.read_hdf``: memory ≈ the file); ``'volume'`` reads the
        per-run NIfTI betas within the brain mask, one run at a time.
    roi : str | list of str | None
        None = every voxel (table rows / brain mask). Otherwise ROI column(s) of
        ``sub-XX_VoxelMetadata.csv`` (union); a name without hemisphere such as ``'FFA'``
        means ``lFFA`` ∪ ``rFFA``. The volume form needs the VoxelMetadata file for this.
    sessions : sequence of int | None
        1-based sessions to load; None = all. Splits and repeats do not depend on it.
    zscore_sessions : bool
        Z-score every voxel over the loaded trials of each session.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_trials, n_voxels); ``stimulus_ids`` index
        ``info['stimulus_names']`` (sorted unique file names such as ``dog_12s.jpg``), with
        ``info['concept']`` per name; ``split`` from ``trial_type`` (table) or "shown in
        more than one session" (volume); ``repeat`` counts earlier showings in session/run
        order; ``session``, ``run``; ``info['voxel_ijk']`` (brain-mask grid indices).
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        check_option("form", form, THINGS_FMRI_FORMS)
        if not isinstance(zscore_sessions, (bool, np.bool_)):
            raise BadInputError(f"zscore_sessions must be True or False, got {zscore_sessions!r}.")
        layout = THINGSfMRILayout(data_dir, subject)
        if not layout.data_dir.is_dir():
            raise BadInputError(
                f"THINGS-fMRI data_dir {str(layout.data_dir)!r} does not exist. {_HOW_TO_GET}"
            )
        if sessions is not None:
            if isinstance(sessions, (str, bytes)) or not hasattr(sessions, "__iter__"):
                raise BadInputError(
                    f"sessions must be a list of session numbers or None, got {sessions!r}."
                )
            sessions = sorted({check_positive_int("sessions", s) for s in sessions})
            if not sessions:
                raise BadInputError("sessions is empty; pass None for all sessions.")
        if form == "table":
            parts = _read_table(layout, roi, sessions)
        else:
            parts = _read_volume(layout, roi, sessions)
        return _assemble(layout, form, roi, zscore_sessions, **parts)
    finally:
        logger.setLevel(old_level)


def _read_responses(path: Path):
    import pandas as pd

    _require(path, "response table")
    try:
        try:
            return pd.read_hdf(path)
        except ValueError as err:  # several keys in the file
            if "key must be provided" not in str(err):
                raise
            return pd.read_hdf(path, key="ResponseData")
    except ImportError as err:
        raise ImportError(
            "Reading THINGS-fMRI's ResponseData.h5 needs PyTables: pip install tables"
        ) from err
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise BadInputError(f"Could not read {str(path)!r} with pandas.read_hdf: {err}") from err


def _read_table(layout: THINGSfMRILayout, roi, sessions):
    stim = _read_csv(layout.stimulus_metadata, "stimulus metadata", STIMULUS_COLUMNS)
    voxels = _read_csv(layout.voxel_metadata, "voxel metadata", VOXEL_COLUMNS)
    responses = _read_responses(layout.responses)
    path = layout.responses
    if "voxel_id" not in responses.columns:
        raise BadInputError(
            f"{str(path)!r} lacks the column 'voxel_id' (found: {list(responses.columns)[:5]}...)."
        )
    trial_cols = [c for c in responses.columns if c != "voxel_id"]
    if len(trial_cols) != len(stim):
        raise BadInputError(
            f"{str(path)!r} has {len(trial_cols)} trial columns but "
            f"{str(layout.stimulus_metadata)!r} has {len(stim)} rows; they must be equal "
            "(one metadata row per trial column)."
        )
    as_int = [int(c) for c in trial_cols if str(c).lstrip("-").isdigit()]
    if len(as_int) == len(trial_cols) and as_int != list(range(len(trial_cols))):
        raise BadInputError(
            f"{str(path)!r}: trial columns must be numbered 0..{len(trial_cols) - 1} in order "
            f"(rows of the stimulus metadata), got {trial_cols[:5]}..."
        )
    vox_ids = voxels["voxel_id"].to_numpy()
    resp_ids = responses["voxel_id"].to_numpy()
    if not np.array_equal(vox_ids, resp_ids):
        pos = {int(v): i for i, v in enumerate(resp_ids)}
        lacking = [int(v) for v in vox_ids if int(v) not in pos]
        if lacking:
            raise BadInputError(
                f"{str(layout.voxel_metadata)!r} lists {len(lacking)} voxel_id(s) absent from "
                f"{str(path)!r} (e.g. {lacking[:5]}); use the files of the same subject."
            )
        responses = responses.iloc[[pos[int(v)] for v in vox_ids]]
    rows = np.arange(len(voxels)) if roi is None else _roi_rows(voxels, roi, layout.voxel_metadata)

    kind = stim["trial_type"].astype(str).to_numpy()
    keep = np.isin(kind, ("train", "test"))
    if not keep.all():
        logger.info(
            "THINGS-fMRI table: dropping %d trial(s) whose trial_type is not train/test (%s).",
            int((~keep).sum()),
            sorted(set(kind[~keep])),
        )
    session = stim["session"].to_numpy(np.int64)
    run = stim["run"].to_numpy(np.int64)
    names = stim["stimulus"].astype(str).to_numpy()
    order = np.lexsort((np.arange(len(stim)), run, session))  # chronological
    repeat = np.empty(len(stim), dtype=np.int64)
    repeat[order] = repeat_index(names[order])
    if sessions is not None:
        unknown = sorted(set(sessions) - set(session.tolist()))
        if unknown:
            raise BadInputError(
                f"sessions {unknown} not in {str(layout.stimulus_metadata)!r} "
                f"(sessions there: {sorted(set(session.tolist()))})."
            )
        keep &= np.isin(session, sessions)
    cols = np.flatnonzero(keep)
    positions = responses.columns.get_indexer(trial_cols)
    X = responses.iloc[rows, positions[cols]].to_numpy(dtype=np.float32).T.copy()
    ijk = voxels[["voxel_x", "voxel_y", "voxel_z"]].to_numpy()[rows]
    affine = grid = None
    if layout.brainmask.is_file():
        mask, affine = read_nifti_mask(layout.brainmask, "brain mask")
        grid = mask.shape
    return {
        "X": X,
        "names": names[cols],
        "all_names": names,
        "all_concepts": stim["concept"].astype(str).to_numpy(),
        "split": kind[cols],
        "session": session[cols],
        "run": run[cols],
        "repeat": repeat[cols],
        "ijk": ijk.astype(np.int64),
        "affine": affine,
        "grid": grid,
        "files": {
            "responses": str(path),
            "stimulus_metadata": str(layout.stimulus_metadata),
            "voxel_metadata": str(layout.voxel_metadata),
        },
    }


def _read_conditions(path: Path, n_volumes: int, betas: Path) -> np.ndarray:
    df = _read_csv(path, "run conditions", ("image_filename",), sep="\t")
    if len(df) != n_volumes:
        raise BadInputError(
            f"{str(path)!r} has {len(df)} rows but {str(betas)!r} holds {n_volumes} trial "
            "volumes; they must be equal (one row per volume, catch trials included)."
        )
    return df["image_filename"].astype(str).to_numpy()


def _read_volume(layout: THINGSfMRILayout, roi, sessions):
    import nibabel as nib
    from tqdm.auto import tqdm

    runs = layout.available_runs()
    if not runs:
        raise BadInputError(
            f"No run beta files (ses-thingsNN/{layout.sub}_ses-thingsNN_run-NN_betas.nii.gz) "
            f"in {str(layout.volume_dir)!r}. {_HOW_TO_GET}"
        )
    all_sessions = sorted({s for s, _ in runs})
    if sessions is not None:
        unknown = sorted(set(sessions) - set(all_sessions))
        if unknown:
            raise BadInputError(
                f"sessions {unknown} have no run beta files in {str(layout.volume_dir)!r} "
                f"(available sessions: {all_sessions})."
            )
    mask_path = _require(layout.brainmask, "brain mask")
    mask, affine = read_nifti_mask(mask_path, "brain mask")
    files = {"brainmask": str(mask_path), "betas": {}}
    if roi is None:
        ijk = np.argwhere(mask)
    else:
        voxels = _read_csv(layout.voxel_metadata, "voxel metadata", VOXEL_COLUMNS)
        rows = _roi_rows(voxels, roi, layout.voxel_metadata)
        ijk = voxels[["voxel_x", "voxel_y", "voxel_z"]].to_numpy()[rows].astype(np.int64)
        inside = ((ijk >= 0) & (ijk < mask.shape)).all(axis=1)
        if not inside.all() or not mask[tuple(ijk[inside].T)].all():
            raise BadInputError(
                f"{str(layout.voxel_metadata)!r}: voxel_x/y/z of roi={roi!r} fall outside the "
                f"brain mask {str(mask_path)!r} (shape {mask.shape}); use the same subject."
            )
        files["voxel_metadata"] = str(layout.voxel_metadata)

    # Conditions of every run (small files): splits and repeats over the whole experiment.
    table = []  # (session, run, volume index, file name) of non-catch trials
    for s, r in runs:
        betas = layout.run_betas(s, r)
        img = nib.load(betas)
        if len(img.shape) != 4:
            raise BadInputError(f"{str(betas)!r} must be 4-D (X, Y, Z, n_trials), got {img.shape}.")
        check_same_grid(mask.shape, affine, mask_path, img.shape[:3], img.affine, betas)
        cond = _read_conditions(layout.run_conditions(s, r), int(img.shape[3]), betas)
        for v, name in enumerate(cond):
            if not Path(name).name.lower().startswith("catch"):
                table.append((s, r, v, name))
    if not table:
        raise BadInputError(f"Every trial in {str(layout.volume_dir)!r} is a catch trial.")
    t_session = np.array([t[0] for t in table], dtype=np.int64)
    t_run = np.array([t[1] for t in table], dtype=np.int64)
    t_vol = np.array([t[2] for t in table], dtype=np.int64)
    paths = np.array([t[3] for t in table], dtype=str)
    names = np.array([Path(p).name for p in paths], dtype=str)
    concepts = np.array([Path(p).parent.name for p in paths], dtype=str)
    repeat = repeat_index(names)  # table is already in session, run, volume order
    n_sessions_shown: dict[str, int] = {}
    for name, _ in set(zip(names.tolist(), t_session.tolist(), strict=True)):
        n_sessions_shown[name] = n_sessions_shown.get(name, 0) + 1
    split = np.array(["test" if n_sessions_shown[n] > 1 else "train" for n in names], dtype=str)

    keep = np.ones(len(table), bool) if sessions is None else np.isin(t_session, sessions)
    load_runs = [(s, r) for s, r in runs if sessions is None or s in sessions]
    X = np.empty((int(keep.sum()), len(ijk)), dtype=np.float32)
    pos = 0
    bar = tqdm(load_runs, desc=f"THINGS-fMRI {layout.sub} runs", disable=progress_disabled())
    for s, r in bar:
        sel = (t_session == s) & (t_run == r)
        block = read_masked_betas(layout.run_betas(s, r), ijk)[t_vol[sel]]
        X[pos : pos + len(block)] = block
        pos += len(block)
        files["betas"][(int(s), int(r))] = str(layout.run_betas(s, r))
    return {
        "X": X,
        "names": names[keep],
        "all_names": names,
        "all_concepts": concepts,
        "split": split[keep],
        "session": t_session[keep],
        "run": t_run[keep],
        "repeat": repeat[keep],
        "ijk": ijk,
        "affine": affine,
        "grid": mask.shape,
        "files": files,
    }


def _assemble(layout, form, roi, zscore_sessions, *, X, names, all_names, all_concepts, split,
              session, run, repeat, ijk, affine, grid, files) -> Trials:  # fmt: skip
    if len(X) == 0:
        raise BadInputError(f"THINGS-fMRI {layout.sub}: no train/test trial to load.")
    n_flat = 0
    if zscore_sessions:
        for s in np.unique(session):
            sel = session == s
            X[sel], flat = zscore_rows(X[sel])
            n_flat += flat
    if n_flat:
        logger.info("z-scoring: %d session-voxel(s) with zero variance set to 0.", n_flat)
    X, kept_ijk, nan_ijk = drop_nan_voxels(X, ijk, f"THINGS-fMRI {layout.sub}")
    stim_names, inverse = np.unique(all_names, return_inverse=True)
    ids = np.searchsorted(stim_names, names)
    concept = np.empty(len(stim_names), dtype=object)
    concept[inverse] = all_concepts
    info = {
        "dataset": "things_fmri",
        "form": form,
        "units": "z-score within session" if zscore_sessions else "beta (as stored)",
        "roi": roi,
        "split_rule": (
            "trial_type column of the stimulus metadata"
            if form == "table"
            else "test = stimuli shown in more than one session"
        ),
        "zscore_sessions": bool(zscore_sessions),
        "sessions": sorted(int(s) for s in np.unique(session)),
        "n_voxels": int(len(kept_ijk)),
        "n_nan_voxels_dropped": int(len(nan_ijk)),
        "nan_voxel_ijk": nan_ijk,
        "voxel_ijk": kept_ijk,
        "affine": affine,
        "grid_shape": None if grid is None else tuple(int(v) for v in grid),
        "stimulus_names": stim_names,
        "concept": concept.astype(str),
        "files": files,
    }
    trials = Trials(
        X=X,
        stimulus_ids=ids,
        split=split,
        session=session,
        repeat=repeat,
        subject=layout.subject,
        info=info,
        run=run,
    )
    logger.info("Loaded %r", trials)
    return trials
