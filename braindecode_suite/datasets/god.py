"""Generic Object Decoding (GOD, Horikawa & Kamitani 2017) adapter: bdpy BData HDF5.

Files read (see ``shared/DATASET_FORMATS.md`` §4):

- ``Subject{N}.h5``: one BData file per subject (figshare article 7387130).
  ``/dataset`` float (n_samples, n_columns); ``/metadata/key`` (M byte strings),
  ``/metadata/description`` (M), ``/metadata/value`` float (M, n_columns), 1 where a
  column belongs to the key and NaN elsewhere (for keys such as ``voxel_x`` the row
  holds a value per column instead). Legacy files name the groups ``dataSet`` /
  ``metaData``. Keys used: ``ROI_*`` (voxel columns), ``DataType`` (1 training,
  2 test perception, 3 test imagery), ``stimulus_id`` (``Label`` in older files),
  ``Run``, ``Block``, ``voxel_x/y/z``.
- ``ImageFeatures.h5``: a BData file too, keys ``ImageID``, ``CatID``, ``FeatureType``
  and one key per feature layer (``cnn1`` … ``cnn8``, ``hmax1..3``, ``gist``, ``sift``).
- ``stimulus_ImageNetTraining.tsv`` / ``stimulus_ImageNetTest.tsv``: no header; image
  name, stimulus id, category index, image index.

Stimulus ids are floats ``synset.imageid`` with the image number in the six decimals:
``1518878.010042`` is ``n01518878_10042.JPEG``. The TSVs drop trailing zeros
(``1518878.01491`` is ``n01518878_14910``), so ids are matched after rounding to six
decimals (as the integer ``round(id * 1e6)``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils.logging import logger, verbose_level
from ..utils.validation import BadInputError, check_path, check_positive_int
from ._trials import Trials

__all__ = [
    "BData",
    "GOD_SPLITS",
    "god_stimulus_name",
    "load_god",
    "read_bdata",
    "read_god_image_features",
    "read_god_stimulus_table",
]

#: ``split`` argument of :func:`load_god` → (``DataType`` value, ``Trials.split`` label).
GOD_SPLITS = {
    "training": (1, "train"),
    "test_perception": (2, "test"),
    "test_imagery": (3, "imagery"),
}

_HOW_TO_GET = (
    "GOD is not downloaded automatically: get Subject1.h5 … Subject5.h5 and "
    "ImageFeatures.h5 from figshare article 7387130 (Generic Object Decoding, linked from "
    "github.com/KamitaniLab/GenericObjectDecoding data/README.md) into one folder and pass "
    "it as data_dir. The images themselves are available from the authors on request."
)


# ----------------------------------------------------------------------------- BData
class BData:
    """A BData file (bdpy's HDF5 format) read with h5py; columns are read on demand.

    Use :func:`read_bdata` to open one. Only the metadata is held in memory; each
    :meth:`select` reads the needed columns from the file.

    Attributes
    ----------
    path : Path
        The file.
    keys : list of str
        Metadata keys, in file order.
    descriptions : list of str
        Metadata descriptions (same order).
    values : ndarray of float64, shape (n_keys, n_columns)
        The metadata matrix.
    shape : tuple of int
        ``(n_samples, n_columns)`` of the dataset.
    """

    def __init__(self, path: Path, dataset_name: str, keys, descriptions, values, shape):
        self.path = path
        self._dataset_name = dataset_name
        self.keys = list(keys)
        self.descriptions = list(descriptions)
        self.values = values
        self.shape = tuple(int(s) for s in shape)

    def _row(self, key: str) -> np.ndarray:
        if not isinstance(key, str):
            raise BadInputError(f"key must be a str, got {type(key).__name__} ({key!r}).")
        if key not in self.keys:
            raise BadInputError(
                f"Metadata key {key!r} not found in {str(self.path)!r}. Available keys: "
                f"{self.keys}."
            )
        return self.values[self.keys.index(key)]

    def columns(self, key: str) -> np.ndarray:
        """Boolean mask of shape (n_columns,): the columns whose metadata for ``key`` is 1."""
        return self._row(key) == 1

    def get_metadata(self, key: str, where: str | None = None) -> np.ndarray:
        """The metadata row of ``key``, restricted to the columns of ``where`` if given."""
        row = self._row(key)
        return row if where is None else row[self.columns(where)]

    def read_columns(self, mask: np.ndarray) -> np.ndarray:
        """Dataset columns picked by a boolean mask, as float64 (n_samples, mask.sum())."""
        import h5py

        mask = np.asarray(mask, dtype=bool)
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return np.empty((self.shape[0], 0))
        with h5py.File(self.path, "r") as f:
            # one contiguous slab, then pick columns: faster than h5py point selection
            slab = f[self._dataset_name][:, idx[0] : idx[-1] + 1]
        return np.asarray(slab[:, idx - idx[0]], dtype=np.float64)

    def select(self, key: str) -> np.ndarray:
        """Dataset columns of ``key`` (metadata = 1), shape (n_samples, n_selected).

        Like bdpy's ``BData.select('<key> = 1')`` for one exact key.
        """
        mask = self.columns(key)
        if not mask.any():
            raise BadInputError(
                f"Metadata key {key!r} of {str(self.path)!r} marks no column with 1 (its "
                "row holds values, not a column selection; use get_metadata)."
            )
        return self.read_columns(mask)

    def get(self, key: str) -> np.ndarray:
        """Values of a single-column key (``DataType``, ``Run``, ...), shape (n_samples,)."""
        mask = self.columns(key)
        if mask.sum() != 1:
            raise BadInputError(
                f"get({key!r}) needs a key that marks exactly one column, but it marks "
                f"{int(mask.sum())} in {str(self.path)!r}; use select({key!r}) for groups."
            )
        return self.read_columns(mask)[:, 0]

    def __contains__(self, key) -> bool:
        return key in self.keys

    def __repr__(self) -> str:
        return (
            f"<BData {self.path.name!r} | {self.shape[0]} samples × {self.shape[1]} columns, "
            f"{len(self.keys)} metadata keys>"
        )


def _as_str(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray):  # MATLAB-style char arrays
        return "".join(chr(int(c)) for c in x.ravel())
    return str(x)


def read_bdata(path) -> BData:
    """Open a bdpy BData HDF5 file (``/dataset`` + ``/metadata/{key,description,value}``).

    Parameters
    ----------
    path : str | PathLike
        The ``.h5`` file. Legacy group names ``dataSet``/``metaData`` are accepted.

    Returns
    -------
    bdata : BData
        Metadata in memory; :meth:`BData.select` / :meth:`BData.get` read columns.
    """
    import h5py

    path = check_path("path", path, kind="file", hint=_HOW_TO_GET)
    if path.suffix == ".mat":
        raise BadInputError(
            f"path: {str(path)!r} is a MATLAB BData file; read_bdata reads the HDF5 (.h5) "
            "version of the same data."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise BadInputError(f"Could not open {str(path)!r} as HDF5: {err}") from err
    with f:
        ds_name = next((n for n in ("dataset", "dataSet") if n in f), None)
        md_name = next((n for n in ("metadata", "metaData") if n in f), None)
        if ds_name is None or md_name is None or not isinstance(f[md_name], h5py.Group):
            raise BadInputError(
                f"{str(path)!r} is not a BData file: it needs '/dataset' (or '/dataSet') and "
                f"a '/metadata' (or '/metaData') group, found {sorted(f)}."
            )
        md = f[md_name]
        missing = [k for k in ("key", "value") if k not in md]
        if missing:
            raise BadInputError(
                f"{str(path)!r}: '/{md_name}' lacks {missing} (found {sorted(md)})."
            )
        keys = [_as_str(k).strip() for k in md["key"][()].reshape(-1)]
        descs = (
            [_as_str(d).strip() for d in md["description"][()].reshape(-1)]
            if "description" in md
            else [""] * len(keys)
        )
        values = np.asarray(md["value"][()], dtype=np.float64)
        shape = f[ds_name].shape
    if len(shape) != 2:
        raise BadInputError(
            f"{str(path)!r}: '/{ds_name}' must be 2-D (samples, columns), got shape {shape}."
        )
    if values.ndim != 2 or values.shape != (len(keys), shape[1]):
        raise BadInputError(
            f"{str(path)!r}: '/{md_name}/value' has shape {values.shape} but BData needs "
            f"(n_keys, n_columns) = ({len(keys)}, {shape[1]})."
        )
    if len(descs) != len(keys):
        raise BadInputError(
            f"{str(path)!r}: {len(keys)} metadata keys but {len(descs)} descriptions."
        )
    return BData(path, ds_name, keys, descs, values, shape)


# ----------------------------------------------------------------------------- stimuli
def _id_keys(ids) -> np.ndarray:
    """Float ``synset.imageid`` ids → int64 ``round(id * 1e6)`` (six-decimal match)."""
    ids = np.asarray(ids, dtype=np.float64)
    return np.round(ids * 1e6).astype(np.int64)


def god_stimulus_name(stimulus_id: float) -> str:
    """``1518878.01491`` → ``'n01518878_14910.JPEG'`` (ImageNet file name of a GOD id)."""
    key = int(_id_keys([stimulus_id])[0])
    synset, image = divmod(key, 1_000_000)
    return f"n{synset:08d}_{image}.JPEG"


def read_god_stimulus_table(path):
    """Read ``stimulus_ImageNetTraining.tsv`` / ``stimulus_ImageNetTest.tsv``.

    Parameters
    ----------
    path : str | PathLike
        Tab-separated, no header: image name (``n01518878_10042``), stimulus id
        (``1518878.010042``), category index (1-based), image index (1-based).

    Returns
    -------
    table : pandas.DataFrame
        Columns ``name`` (with ``.JPEG`` appended where missing), ``stimulus_id``
        (float), ``category_index``, ``image_index`` (int, as in the file), ``synset``
        (int part of the id) and ``key`` (``round(stimulus_id * 1e6)``, the match key).
    """
    import pandas as pd

    path = check_path("path", path, kind="file", hint=_HOW_TO_GET)
    try:
        df = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadInputError(f"Could not read {str(path)!r} as TSV: {err}") from err
    if df.shape[1] != 4:
        raise BadInputError(
            f"{str(path)!r} has {df.shape[1]} column(s) but a GOD stimulus table has 4 "
            "(name, stimulus id, category index, image index; no header)."
        )
    try:
        ids = df[1].astype(float).to_numpy()
        cat = df[2].astype(np.int64).to_numpy()
        img = df[3].astype(np.int64).to_numpy()
    except ValueError as err:
        raise BadInputError(
            f"{str(path)!r}: columns 2-4 must be a float id and two integers ({err}); "
            f"first row: {df.iloc[0].tolist()}."
        ) from err
    names = [n if n.endswith(".JPEG") else f"{n}.JPEG" for n in df[0]]
    keys = _id_keys(ids)
    derived = [god_stimulus_name(i) for i in ids]
    bad = [i for i, (a, b) in enumerate(zip(names, derived, strict=True)) if a != b]
    if bad:
        i = bad[0]
        raise BadInputError(
            f"{str(path)!r} row {i + 1}: name {names[i]!r} does not match id {df[1][i]} "
            f"(which names {derived[i]!r})."
        )
    return pd.DataFrame(
        {
            "name": names,
            "stimulus_id": ids,
            "category_index": cat,
            "image_index": img,
            "synset": keys // 1_000_000,
            "key": keys,
        }
    )


def read_god_image_features(path, layer: str) -> dict:
    """Read one layer of ``ImageFeatures.h5`` (a BData file).

    Parameters
    ----------
    path : str | PathLike
        ``ImageFeatures.h5``.
    layer : str
        A feature key such as ``'cnn8'``; the error lists those present.

    Returns
    -------
    features : dict
        ``X`` ndarray of float32 (n_rows, n_units); ``image_id`` float64 (n_rows,)
        (``synset.imageid``); ``category`` int64 (n_rows,) from ``CatID`` (int part of
        ``image_id`` when absent); ``feature_type`` int64 (n_rows,) from ``FeatureType``
        (1 training, 2 test, 3 test category average, 4 other-category average in the
        published file) or None; ``stimulus_names`` list of str
        (``n########_#.JPEG``, ``''`` where ``image_id`` is NaN); ``layer``; ``path``.
    """
    bdata = read_bdata(path)
    if not isinstance(layer, str) or layer in ("ImageID", "CatID", "FeatureType"):
        raise BadInputError(f"layer must be a feature key such as 'cnn8', got {layer!r}.")
    if layer not in bdata:
        layers = [k for k in bdata.keys if k not in ("ImageID", "CatID", "FeatureType")]
        raise BadInputError(
            f"layer {layer!r} not found in {str(bdata.path)!r}; available layers: {layers}."
        )
    if "ImageID" not in bdata:
        raise BadInputError(
            f"{str(bdata.path)!r} lacks the 'ImageID' key (keys: {bdata.keys}); is it GOD's "
            "ImageFeatures.h5?"
        )
    image_id = bdata.get("ImageID")
    finite = np.isfinite(image_id)
    category = (
        bdata.get("CatID")
        if "CatID" in bdata
        else np.where(finite, np.floor(np.nan_to_num(image_id)), -1)
    )
    ftype = bdata.get("FeatureType").astype(np.int64) if "FeatureType" in bdata else None
    names = [god_stimulus_name(i) if ok else "" for i, ok in zip(image_id, finite, strict=True)]
    return {
        "X": bdata.select(layer).astype(np.float32),
        "image_id": image_id,
        "category": np.nan_to_num(category, nan=-1).astype(np.int64),
        "feature_type": ftype,
        "stimulus_names": names,
        "layer": layer,
        "path": str(bdata.path),
    }


# ----------------------------------------------------------------------------- loader
def _stimulus_table(ids_all: np.ndarray, stimulus_tables) -> tuple[np.ndarray, list[str]]:
    """Return the table's match keys (in stimulus-index order) and the source files."""
    keys_in_data = np.unique(_id_keys(ids_all[np.isfinite(ids_all)]))
    if stimulus_tables is None:
        return keys_in_data, []
    if isinstance(stimulus_tables, (str, os.PathLike)):
        stimulus_tables = [stimulus_tables]
    if not isinstance(stimulus_tables, Sequence) or not stimulus_tables:
        raise BadInputError(
            "stimulus_tables must be None, a TSV path or a non-empty list of them, got "
            f"{stimulus_tables!r}."
        )
    tables = [read_god_stimulus_table(p) for p in stimulus_tables]
    keys = np.concatenate([t["key"].to_numpy() for t in tables])
    _, first = np.unique(keys, return_index=True)
    keys = keys[np.sort(first)]  # drop duplicates, keep table order
    missing = np.setdiff1d(keys_in_data, keys)
    if missing.size:
        logger.info(
            "%d stimulus id(s) of the data are not in stimulus_tables (e.g. %s); they are "
            "appended to the stimulus table.",
            missing.size,
            god_stimulus_name(missing[0] / 1e6),
        )
        keys = np.concatenate([keys, missing])
    return keys, [str(p) for p in stimulus_tables]


def _repeat_index(stim: np.ndarray, order: np.ndarray) -> np.ndarray:
    """0 for the first showing of each stimulus (in ``order``), then 1, 2, ..."""
    repeat = np.empty(len(stim), dtype=np.int64)
    seen: dict[int, int] = {}
    for i in order:
        repeat[i] = seen.get(int(stim[i]), 0)
        seen[int(stim[i])] = repeat[i] + 1
    return repeat


def load_god(
    data_dir,
    subject: int,
    *,
    roi: str = "ROI_VC",
    split=("training", "test_perception"),
    average_test: bool = False,
    stimulus_tables=None,
    verbose=None,
) -> Trials:
    """Load one GOD subject's preprocessed fMRI samples from ``Subject{N}.h5``.

    Parameters
    ----------
    data_dir : str | PathLike
        Folder holding ``Subject{subject}.h5``.
    subject : int
        Subject number (1–5 in the published data).
    roi : str
        Metadata key of the voxel columns: ``'ROI_VC'``, ``'ROI_V1'`` … ``'ROI_PPA'``,
        ``'ROI_LVC'``, ``'ROI_HVC'`` (a name without ``ROI_`` is accepted).
    split : str | sequence of str
        Which samples: ``'training'`` (``DataType`` 1 → split ``'train'``),
        ``'test_perception'`` (2 → ``'test'``), ``'test_imagery'`` (3 → ``'imagery'``).
    average_test : bool
        Average the samples of each test stimulus (``'test'`` and ``'imagery'`` splits)
        into one trial, as GOD's test scoring does; those trials get ``repeat`` 0 and
        ``session``/``run`` 0, and ``info['n_averaged']`` holds the counts.
    stimulus_tables : None | str | PathLike | sequence of them
        GOD stimulus TSVs (:func:`read_god_stimulus_table`) that fix the stimulus order:
        the table rows first (in file order), then any id of the data not in them.
        None: the sorted unique ids of the file (all data types, so the index does not
        depend on ``split``).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_trials, n_voxels) as stored; ``stimulus_ids`` index into
        ``info['stimulus_names']`` (``n########_#.JPEG``) and ``info['category']`` (the
        synset number ``int(stimulus_id)``); ``split``; ``run`` from ``Run``; ``session``
        from ``Session`` when the file has it, else 1; ``repeat`` = showings of the same
        stimulus before this one within its split, in (Run, Block, sample) order.
        ``info``: dataset, subject, roi, n_voxels, voxel_xyz (n_voxels, 3) when the file
        has ``voxel_x/y/z``, stimulus_float_ids, files.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        return _load_god(data_dir, subject, roi, split, average_test, stimulus_tables)
    finally:
        logger.setLevel(old_level)


def _load_god(data_dir, subject, roi, split, average_test, stimulus_tables):
    data_dir = check_path("data_dir", data_dir, kind="dir", hint=_HOW_TO_GET)
    subject = check_positive_int("subject", subject)
    path = data_dir / f"Subject{subject}.h5"
    if not path.is_file():
        found = sorted(p.name for p in data_dir.glob("Subject*.h5"))
        raise BadInputError(
            f"GOD file for subject {subject} not found: {str(path)!r} (found {found}). "
            f"{_HOW_TO_GET}"
        )
    splits = [split] if isinstance(split, str) else list(split)
    if not splits:
        raise BadInputError(f"split is empty; choose from {list(GOD_SPLITS)}.")
    for s in splits:
        if s not in GOD_SPLITS:
            raise BadInputError(
                f"Invalid value for the 'split' parameter: {s!r}. Allowed values are "
                f"{list(GOD_SPLITS)}."
            )
    if not isinstance(average_test, bool):
        raise BadInputError(f"average_test must be True or False, got {average_test!r}.")
    bdata = read_bdata(path)
    if not isinstance(roi, str) or not roi:
        raise BadInputError(f"roi must be a metadata key such as 'ROI_VC', got {roi!r}.")
    if roi not in bdata and f"ROI_{roi}" in bdata:
        roi = f"ROI_{roi}"
    if roi not in bdata:
        rois = [k for k in bdata.keys if k.startswith("ROI_")]
        raise BadInputError(
            f"roi {roi!r} is not a metadata key of {str(path)!r}; available ROI keys: {rois} "
            f"(all keys: {bdata.keys})."
        )
    id_key = "stimulus_id" if "stimulus_id" in bdata else "Label"
    for key in ("DataType", id_key):
        if key not in bdata:
            raise BadInputError(
                f"{str(path)!r} lacks the metadata key {key!r} (keys: {bdata.keys}); is it a "
                "GOD Subject file?"
            )
    data_type = bdata.get("DataType")
    ids_all = bdata.get(id_key)
    n = bdata.shape[0]
    run_all = bdata.get("Run") if "Run" in bdata else np.zeros(n)
    block_all = bdata.get("Block") if "Block" in bdata else np.zeros(n)
    session_all = bdata.get("Session") if "Session" in bdata else np.ones(n)

    table_keys, table_files = _stimulus_table(ids_all, stimulus_tables)
    wanted = np.isin(data_type, [GOD_SPLITS[s][0] for s in splits])
    if not wanted.any():
        present = sorted({int(v) for v in data_type[np.isfinite(data_type)]})
        raise BadInputError(
            f"{str(path)!r} has no sample of split {splits} (DataType values present: "
            f"{present}; 1 training, 2 test perception, 3 test imagery)."
        )
    rows = np.flatnonzero(wanted)
    if not np.isfinite(ids_all[rows]).all():
        raise BadInputError(
            f"{str(path)!r}: {id_key!r} is NaN for {int((~np.isfinite(ids_all[rows])).sum())} "
            "selected sample(s)."
        )
    index = {int(k): i for i, k in enumerate(table_keys)}
    stim = np.array([index[int(k)] for k in _id_keys(ids_all[rows])], dtype=np.int64)

    X = bdata.select(roi)[rows].astype(np.float32)
    label_of = {v: lab for v, lab in GOD_SPLITS.values()}
    split_arr = np.array([label_of[int(v)] for v in data_type[rows]])
    run = run_all[rows].astype(np.int64)
    session = session_all[rows].astype(np.int64)
    order = np.lexsort((np.arange(len(rows)), block_all[rows], run, session))
    repeat = np.empty(len(rows), dtype=np.int64)
    for lab in np.unique(split_arr):
        sel = np.flatnonzero(split_arr == lab)
        sub_order = np.argsort(np.argsort(order)[sel], kind="stable")
        repeat[sel] = _repeat_index(stim[sel], sub_order)

    n_averaged: dict[str, dict[int, int]] = {}
    if average_test:
        keep = ~np.isin(split_arr, ["test", "imagery"])
        parts = [(X[keep], stim[keep], split_arr[keep], session[keep], repeat[keep], run[keep])]
        for lab in ("test", "imagery"):
            sel = split_arr == lab
            if not sel.any():
                continue
            uniq, inverse, counts = np.unique(stim[sel], return_inverse=True, return_counts=True)
            sums = np.zeros((len(uniq), X.shape[1]), dtype=np.float64)
            np.add.at(sums, inverse, X[sel])
            mean = (sums / counts[:, None]).astype(np.float32)
            zeros = np.zeros(len(uniq), dtype=np.int64)
            parts.append((mean, uniq, np.full(len(uniq), lab), zeros, zeros, zeros))
            n_averaged[lab] = {int(u): int(c) for u, c in zip(uniq, counts, strict=True)}
        X, stim, split_arr, session, repeat, run = (
            np.concatenate([p[i] for p in parts]) for i in range(6)
        )

    roi_cols = bdata.columns(roi)
    info = {
        "dataset": "god",
        "subject": subject,
        "roi": roi,
        "n_voxels": int(roi_cols.sum()),
        "units": "as stored (preprocessed BOLD samples)",
        "splits": splits,
        "average_test": average_test,
        "stimulus_names": [god_stimulus_name(k / 1e6) for k in table_keys],
        "stimulus_float_ids": (table_keys // 1_000_000 + (table_keys % 1_000_000) / 1e6),
        "category": (table_keys // 1_000_000).astype(np.int64),
        "files": {"bdata": str(path), "stimulus_tables": table_files},
    }
    if n_averaged:
        info["n_averaged"] = n_averaged
    if all(k in bdata for k in ("voxel_x", "voxel_y", "voxel_z")):
        info["voxel_xyz"] = np.stack(
            [bdata.get_metadata(k, where=roi) for k in ("voxel_x", "voxel_y", "voxel_z")],
            axis=1,
        )
    trials = Trials(
        X=X,
        stimulus_ids=stim,
        split=split_arr,
        session=session,
        repeat=repeat,
        subject=subject,
        info=info,
        run=run,
    )
    logger.info("Loaded %r", trials)
    return trials
