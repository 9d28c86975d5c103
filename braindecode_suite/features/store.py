"""HDF5 feature store: one file per extraction run, rows keyed by stimulus id.

A store holds one or more named *fields* (e.g. the layers of a network), each an
array of shape ``(n_rows, *row_shape)`` whose rows follow a stored stimulus-id
index. Files are chunked along rows and compressed (lzf by default).

Crash safety
------------
:class:`FeatureWriter` writes into ``<path>.partial``. After every
:meth:`~FeatureWriter.append` it records the batch (row range and a CRC32 of the
bytes of every field) in a small ``/_batches`` dataset and flushes. A later
:meth:`FeatureStore.open_writer` re-reads each recorded batch, keeps the longest
prefix whose checksums match and resumes after it; a partial that does not open
or does not match the request is removed and started over. The final ``path``
appears only through :func:`os.replace` once every row is written, so a killed
process never leaves a file that a later run would trust.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..utils.logging import logger
from ..utils.validation import BadInputError, check_option, check_positive_int, check_type

__all__ = [
    "FeatureStore",
    "FeatureWriter",
    "get_cache_dir",
    "list_stores",
    "prune_cache",
    "PARTIAL_SUFFIX",
]

PARTIAL_SUFFIX = ".partial"
FORMAT_VERSION = 1
_CHUNK_BYTES = 2**20  # target size of one HDF5 chunk
_BLOCK_BYTES = 64 * 2**20  # bound on the memory of one block in reads
_CHUNK_CACHE_BYTES = 32 * 2**20
_COMPRESSIONS = ("lzf", "gzip", None)
_STR_DTYPE = h5py.string_dtype("utf-8")


def get_cache_dir() -> Path:
    """Return the feature cache folder, creating it.

    ``$BDS_CACHE_DIR/features`` when the environment variable is set, else
    ``~/.cache/braindecode_suite/features``.
    """
    root = os.environ.get("BDS_CACHE_DIR") or Path.home() / ".cache" / "braindecode_suite"
    path = Path(root).expanduser() / "features"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _corrupt_message(path: Path, err: BaseException) -> str:
    return (
        f"The feature store {str(path)!r} is corrupt or truncated ({err}). "
        "Remove it and it will be recomputed: run `bds cache prune --corrupt` or delete the file."
    )


def _is_lock_error(err: BaseException) -> bool:
    # HDF5: "unable to lock file, errno = 11, ..." (and not "sblock" in other messages)
    return "lock file" in str(err).lower()


def _as_ids(name: str, ids: Any) -> np.ndarray:
    """Stimulus ids as a 1-D int64 or unicode array."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise BadInputError(f"{name} must be a 1-D array of ids, got shape {arr.shape} instead.")
    if arr.dtype.kind in "iu" or (arr.size == 0 and arr.dtype.kind == "f"):
        return arr.astype(np.int64)
    if arr.dtype.kind in "US" or arr.dtype == object:
        try:
            return arr.astype(str)
        except (TypeError, ValueError) as err:
            raise BadInputError(f"{name} must hold ints or strings ({err}).") from None
    raise BadInputError(f"{name} must hold ints or strings, got dtype {arr.dtype} instead.")


def _check_unique(name: str, ids: np.ndarray) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        dup = uniq[counts > 1]
        raise BadInputError(
            f"{name} holds {dup.size} duplicated ids (first: {dup[:5].tolist()}); "
            "every stimulus must appear once."
        )


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(arr).data) & 0xFFFFFFFF


def _json_norm(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _read_ids(f: h5py.File) -> np.ndarray:
    ds = f["stimulus_ids"]
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[()], dtype=str)
    return ds[()].astype(np.int64)


def _read_fields(f: h5py.File) -> dict[str, tuple[tuple[int, ...], str]]:
    order = json.loads(f.attrs["field_order"])
    return {k: (tuple(f["fields"][k].shape[1:]), f["fields"][k].dtype.str) for k in order}


class FeatureStore:
    """Read a complete store file.

    Parameters
    ----------
    path : str | PathLike
        A complete ``.h5`` store written by :class:`FeatureWriter`.

    Attributes
    ----------
    path : Path
    attrs : dict
        User attributes given at creation.
    fields : list of str
    stimulus_ids : ndarray of shape (n_rows,)
        int64 or unicode ids, in row order.
    n_rows : int
    """

    def __init__(self, path: str | os.PathLike):
        check_type("path", path, (str, os.PathLike))
        self.path = Path(path).expanduser()
        if self.path.name.endswith(PARTIAL_SUFFIX):
            raise BadInputError(
                f"{str(self.path)!r} is a partial store still being written (or left by an "
                "interrupted run); open the final path, or resume it with FeatureStore.open_writer."
            )
        if not self.path.is_file():
            hint = (
                " A partial file exists next to it: its writer did not finish."
                if (_partial_path(self.path).exists())
                else ""
            )
            raise BadInputError(f"Feature store {str(self.path)!r} does not exist.{hint}")
        try:
            with h5py.File(self.path, "r") as f:
                complete = bool(f.attrs.get("complete", False))
                if complete:
                    self.attrs = json.loads(f.attrs["attrs"])
                    self._fields = _read_fields(f)
                    self._chunks = {k: f["fields"][k].chunks for k in self._fields}
                    self._compression = {k: f["fields"][k].compression for k in self._fields}
                    self.stimulus_ids = _read_ids(f)
                    self.created = str(f.attrs.get("created", ""))
                    shapes = {f["fields"][k].shape[0] for k in self._fields}
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as err:
            raise BadInputError(_corrupt_message(self.path, err)) from None
        if not complete:
            raise BadInputError(
                f"Feature store {str(self.path)!r} is not marked complete; it was not written by "
                "a finished FeatureWriter. Delete it to recompute."
            )
        self.n_rows = int(self.stimulus_ids.size)
        if shapes - {self.n_rows}:
            raise BadInputError(
                _corrupt_message(self.path, ValueError("field rows differ from the id index"))
            )
        self._index = None

    # -- metadata -------------------------------------------------------------------
    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """True only if a complete, openable store is at ``path``."""
        try:
            FeatureStore(path)
        except (BadInputError, TypeError):
            return False
        return True

    @property
    def fields(self) -> list[str]:
        return list(self._fields)

    def __repr__(self) -> str:
        return f"<FeatureStore {self.path.name}: {self.n_rows} rows, fields={self.fields}>"

    def _check_field(self, field: str) -> h5py.Dataset:
        return check_option("field", field, self.fields)

    def field_info(self, field: str) -> dict:
        """Shape ``(n_rows, *row_shape)``, dtype, chunks and compression of ``field``."""
        self._check_field(field)
        row_shape, dtype = self._fields[field]
        return {
            "shape": (self.n_rows, *row_shape),
            "dtype": np.dtype(dtype).name,
            "chunks": self._chunks[field],
            "compression": self._compression[field],
        }

    def info(self) -> dict:
        """Summary: path, size on disk, fields, rows, user attrs and creation time."""
        return {
            "path": str(self.path),
            "size_bytes": self.path.stat().st_size,
            "n_rows": self.n_rows,
            "fields": {k: self.field_info(k) for k in self.fields},
            "attrs": self.attrs,
            "created": self.created,
        }

    # -- reading --------------------------------------------------------------------
    def _open(self) -> h5py.File:
        try:
            return h5py.File(self.path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
        except OSError as err:
            raise BadInputError(_corrupt_message(self.path, err)) from None

    def _rows_of(self, stimulus_ids: Any) -> np.ndarray:
        """Row index of each requested id, in request order."""
        ids = np.asarray(stimulus_ids)
        if ids.ndim != 1:
            raise BadInputError(f"stimulus_ids must be 1-D, got shape {ids.shape} instead.")
        if self._index is None:
            order = np.argsort(self.stimulus_ids, kind="stable")
            self._index = (order, self.stimulus_ids[order])
        order, sorted_ids = self._index
        kind = self.stimulus_ids.dtype.kind
        if ids.size and (ids.dtype.kind in "iu") != (kind == "i"):
            want = "integers" if kind == "i" else "strings"
            raise BadInputError(
                f"stimulus_ids must be {want} like the store's ids, got dtype {ids.dtype} "
                f"instead (store {str(self.path)!r})."
            )
        ids = ids.astype(np.int64 if kind == "i" else str)
        pos = np.searchsorted(sorted_ids, ids)
        pos_c = np.minimum(pos, max(sorted_ids.size - 1, 0))
        found = (
            (pos < sorted_ids.size) & (sorted_ids[pos_c] == ids)
            if sorted_ids.size
            else (np.zeros(ids.size, dtype=bool))
        )
        if not found.all():
            missing = ids[~found]
            raise BadInputError(
                f"{missing.size} of {ids.size} requested stimulus ids are not in the feature "
                f"store {str(self.path)!r} (first missing: {missing[:5].tolist()}). Recompute "
                "the features for this stimulus set."
            )
        return order[pos_c]

    def _read_rows(self, ds: h5py.Dataset, rows: np.ndarray, dtype) -> np.ndarray:
        """Read ``rows`` (any order, repeats allowed) by reading whole chunk runs."""
        out_dtype = np.dtype(dtype) if dtype is not None else ds.dtype
        out = np.empty((rows.size, *ds.shape[1:]), dtype=out_dtype)
        if rows.size == 0:
            return out
        uniq, inverse = np.unique(rows, return_inverse=True)
        chunk = ds.chunks[0] if ds.chunks else 1
        row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
        max_chunks = max(1, _BLOCK_BYTES // (row_bytes * chunk))
        ck = uniq // chunk
        # start a new read where chunks stop being consecutive or a block gets too big
        breaks = np.flatnonzero(np.diff(ck) > 1) + 1
        starts = np.concatenate([[0], breaks])
        stops = np.concatenate([breaks, [uniq.size]])
        picked = np.empty((uniq.size, *ds.shape[1:]), dtype=ds.dtype)
        for a, b in zip(starts, stops, strict=True):
            c0 = ck[a]
            while c0 <= ck[b - 1]:
                c1 = min(c0 + max_chunks, ck[b - 1] + 1)
                lo, hi = c0 * chunk, min(c1 * chunk, ds.shape[0])
                sel = (uniq >= lo) & (uniq < hi)
                picked[sel] = ds[lo:hi][uniq[sel] - lo]
                c0 = c1
        out[...] = picked[inverse]
        return out

    def read(self, field: str, stimulus_ids: Any = None, *, dtype=None) -> np.ndarray:
        """Rows of ``field`` for ``stimulus_ids``.

        Parameters
        ----------
        field : str
            One of :attr:`fields`.
        stimulus_ids : array-like of shape (n_ids,) | None
            Ids to read, in the order wanted (repeats allowed). ``None`` reads every row.
        dtype : dtype | None
            Cast the result (default: the stored dtype).

        Returns
        -------
        X : ndarray of shape (n_ids, *row_shape)
        """
        self._check_field(field)
        rows = None if stimulus_ids is None else self._rows_of(stimulus_ids)
        with self._open() as f:
            ds = f["fields"][field]
            try:
                if rows is None:
                    out = ds[()]
                    return out if dtype is None else out.astype(dtype, copy=False)
                return self._read_rows(ds, rows, dtype)
            except OSError as err:
                raise BadInputError(_corrupt_message(self.path, err)) from None

    def iter_blocks(
        self, field: str, stimulus_ids: Any = None, *, block_rows: int | None = None, dtype=None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids_block, X_block)`` with bounded memory.

        Parameters
        ----------
        field : str
        stimulus_ids : array-like of shape (n_ids,) | None
            Ids in the order wanted; ``None`` walks every row in stored order.
        block_rows : int | None
            Rows per block; default keeps a block under 64 MiB.
        dtype : dtype | None

        Yields
        ------
        ids_block : ndarray of shape (n_block,)
        X_block : ndarray of shape (n_block, *row_shape)
        """
        self._check_field(field)
        row_shape, stored = self._fields[field]
        if block_rows is None:
            itemsize = max(np.dtype(stored).itemsize, np.dtype(dtype or stored).itemsize)
            row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * itemsize)
            block_rows = max(1, _BLOCK_BYTES // row_bytes)
        block_rows = check_positive_int("block_rows", block_rows)
        ids = self.stimulus_ids if stimulus_ids is None else np.asarray(stimulus_ids)
        rows = None if stimulus_ids is None else self._rows_of(ids)  # fail early on missing ids
        with self._open() as f:
            ds = f["fields"][field]
            for start in range(0, ids.size, block_rows):
                stop = min(start + block_rows, ids.size)
                try:
                    if rows is None:
                        block = ds[start:stop]
                        if dtype is not None:
                            block = block.astype(dtype, copy=False)
                    else:
                        block = self._read_rows(ds, rows[start:stop], dtype)
                except OSError as err:
                    raise BadInputError(_corrupt_message(self.path, err)) from None
                yield ids[start:stop], block

    def verify(self) -> bool:
        """Re-read every recorded batch and compare its checksums; True when all match."""
        try:
            with self._open() as f:
                return _verified_prefix(f, self.fields)[0] == self.n_rows
        except (OSError, KeyError, ValueError, RuntimeError) as err:
            logger.warning("verify %s failed: %s", self.path, err)
            return False

    # -- writing --------------------------------------------------------------------
    @classmethod
    def open_writer(
        cls,
        path: str | os.PathLike,
        stimulus_ids: Any,
        fields: dict[str, tuple[tuple[int, ...], str]],
        *,
        attrs: dict | None = None,
        compression: str | None = "lzf",
        chunk_rows: int | None = None,
    ) -> FeatureWriter:
        """Start, or resume, writing the store at ``path``.

        Parameters
        ----------
        path : str | PathLike
            Final path of the store; data goes to ``<path>.partial`` until complete.
        stimulus_ids : array-like of shape (n_rows,)
            Unique int or str ids, in the row order the writer will expect.
        fields : dict of str to (row_shape, dtype)
            E.g. ``{"layer4": ((512, 7, 7), "float16")}``.
        attrs : dict | None
            JSON-serialisable metadata (extractor id, weights hash, preprocessing...).
        compression : 'lzf' | 'gzip' | None
        chunk_rows : int | None
            Rows per chunk; default makes a chunk about 1 MiB.

        Returns
        -------
        writer : FeatureWriter
        """
        return FeatureWriter(
            path, stimulus_ids, fields, attrs=attrs, compression=compression, chunk_rows=chunk_rows
        )


def _verified_prefix(f: h5py.File, fields: list[str]) -> tuple[int, int, bool]:
    """Return ``(n_rows, n_batches, clean)`` of the longest prefix of good batches.

    ``clean`` is False when a recorded batch failed its checksum.
    """
    batches = f["_batches"][()]
    done = 0
    for i, rec in enumerate(batches):
        start, stop = int(rec[0]), int(rec[1])
        if start != done or stop <= start:
            return done, i, False
        for j, k in enumerate(fields):
            if _crc(f["fields"][k][start:stop]) != int(rec[2 + j]):
                return done, i, False
        done = stop
    return done, len(batches), True


class FeatureWriter:
    """Batched, resumable writer; use :meth:`FeatureStore.open_writer` to create one.

    Use as a context manager or call :meth:`close`.

    Attributes
    ----------
    path : Path
        Final path of the store.
    partial_path : Path
        Where rows are written until the store is complete.
    remaining_ids : ndarray of shape (n_remaining,)
        Ids not yet written, in order: the next :meth:`append` starts with these.
    n_done : int
    """

    def __init__(
        self, path, stimulus_ids, fields, *, attrs=None, compression="lzf", chunk_rows=None
    ):
        check_type("path", path, (str, os.PathLike))
        self.path = Path(path).expanduser()
        self.partial_path = _partial_path(self.path)
        check_option("compression", compression, _COMPRESSIONS)
        check_type("fields", fields, dict)
        if not fields:
            raise BadInputError("fields must name at least one field, got an empty dict.")
        self._fields: dict[str, tuple[tuple[int, ...], str]] = {}
        for name, spec in fields.items():
            check_type("field name", name, str)
            if not name or "/" in name:
                raise BadInputError(f"field names must be non-empty without '/', got {name!r}.")
            try:
                shape, dt = spec
                shape = tuple(int(s) for s in shape)
                dt = np.dtype(dt)
            except (TypeError, ValueError) as err:
                raise BadInputError(
                    f"fields[{name!r}] must be (row_shape, dtype), e.g. ((512,), 'float16'); "
                    f"got {spec!r} ({err})."
                ) from None
            if dt.kind not in "fiub":
                raise BadInputError(f"fields[{name!r}] dtype must be numeric, got {dt}.")
            self._fields[name] = (shape, dt.str)
        self._ids = _as_ids("stimulus_ids", stimulus_ids)
        if self._ids.size == 0:
            raise BadInputError("stimulus_ids is empty; a store needs at least one row.")
        _check_unique("stimulus_ids", self._ids)
        self._attrs = _json_norm(attrs or {})
        check_type("attrs", self._attrs, dict)
        self._compression = compression
        if chunk_rows is not None:
            chunk_rows = check_positive_int("chunk_rows", chunk_rows)
        self._chunk_rows = chunk_rows
        if self.path.exists():
            raise BadInputError(
                f"A feature store already exists at {str(self.path)!r}; read it with "
                "FeatureStore(path), or delete it to recompute."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dirty = False  # True after discarding batches that failed their checksum
        self._file = self._resume() or self._create()
        self.n_done = int(self._file["_batches"][-1, 1]) if len(self._file["_batches"]) else 0
        self._closed = False

    # -- opening --------------------------------------------------------------------
    def _open_file(self, mode: str) -> h5py.File:
        return h5py.File(
            self.partial_path,
            mode,
            rdcc_nbytes=_CHUNK_CACHE_BYTES,
            rdcc_w0=1.0,
            **({"fs_strategy": "fsm", "fs_persist": True} if mode == "w" else {}),
        )

    def _resume(self) -> h5py.File | None:
        partial = self.partial_path
        if not partial.exists():
            return None
        try:
            f = self._open_file("r+")
        except OSError as err:
            if _is_lock_error(err):
                raise BadInputError(
                    f"{str(partial)!r} is locked: another process is writing it. Wait for it "
                    "to finish, or delete the file if no such process runs."
                ) from None
            logger.warning("discarding %s: it does not open (%s); starting over", partial, err)
            partial.unlink()
            return None
        try:
            why = self._mismatch(f)
            if why is None:
                done, n_batches, clean = _verified_prefix(f, list(self._fields))
        except Exception as err:  # noqa: BLE001 - any failure means the partial is unusable
            why = f"it is unreadable ({type(err).__name__}: {err})"
        if why is not None:
            f.close()
            logger.warning("discarding %s: %s; starting over", partial, why)
            partial.unlink()
            return None
        if not clean:
            self._dirty = True
            logger.warning(
                "%s: batch %d failed its checksum; keeping the %d rows before it",
                partial,
                n_batches,
                done,
            )
            f["_batches"].resize(n_batches, axis=0)
            f.flush()
        logger.info("resuming %s: %d of %d rows already written", partial, done, self._ids.size)
        return f

    def _mismatch(self, f: h5py.File) -> str | None:
        if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
            return "its format version differs"
        stored_ids = _read_ids(f)
        if stored_ids.dtype.kind != self._ids.dtype.kind or not np.array_equal(
            stored_ids, self._ids
        ):
            return "its stimulus ids differ from the requested ones"
        stored = _read_fields(f)
        if stored != self._fields:
            return f"its fields {stored} differ from the requested {self._fields}"
        if json.loads(f.attrs["attrs"]) != self._attrs:
            return "its attrs differ from the requested ones"
        if f.attrs.get("compression", "") != json.dumps(self._compression):
            return "its compression differs"
        return None

    def _create(self) -> h5py.File:
        f = self._open_file("w")
        n = self._ids.size
        if self._ids.dtype.kind == "U":
            f.create_dataset("stimulus_ids", data=self._ids.astype(object), dtype=_STR_DTYPE)
        else:
            f.create_dataset("stimulus_ids", data=self._ids)
        grp = f.create_group("fields")
        for name, (shape, dt) in self._fields.items():
            row_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize)
            rows = self._chunk_rows or max(1, _CHUNK_BYTES // row_bytes)
            grp.create_dataset(
                name,
                shape=(n, *shape),
                dtype=dt,
                chunks=(min(rows, n), *shape),
                compression=self._compression,
                # shuffle helps gzip; with lzf it was slower and compressed ReLU features worse
                shuffle=self._compression == "gzip" and np.dtype(dt).itemsize > 1,
            )
        n_cols = 2 + len(self._fields)
        f.create_dataset(
            "_batches",
            shape=(0, n_cols),
            maxshape=(None, n_cols),
            chunks=(256, n_cols),
            dtype=np.int64,
        )
        f.attrs.update(
            {
                "format_version": FORMAT_VERSION,
                "attrs": json.dumps(self._attrs, sort_keys=True),
                "field_order": json.dumps(list(self._fields)),
                "compression": json.dumps(self._compression),
                "complete": False,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "h5py_version": h5py.__version__,
                "numpy_version": np.__version__,
            }
        )
        f.flush()
        return f

    # -- writing --------------------------------------------------------------------
    @property
    def remaining_ids(self) -> np.ndarray:
        return self._ids[self.n_done :]

    @property
    def n_rows(self) -> int:
        return int(self._ids.size)

    def append(self, stimulus_ids: Any, arrays: dict[str, np.ndarray]) -> None:
        """Write the next batch of rows.

        Parameters
        ----------
        stimulus_ids : array-like of shape (n_batch,)
            Must equal the next ``n_batch`` entries of :attr:`remaining_ids`.
        arrays : dict of str to ndarray of shape (n_batch, *row_shape)
            One array per field; cast to the field's dtype. Non-finite floats are refused.
        """
        if self._closed:
            raise RuntimeError(f"This writer of {str(self.path)!r} is closed.")
        ids = _as_ids("stimulus_ids", stimulus_ids)
        nb = ids.size
        expected = self.remaining_ids[:nb]
        if (
            nb == 0
            or expected.size != nb
            or ids.dtype.kind != expected.dtype.kind
            or not (np.array_equal(ids, expected))
        ):
            raise BadInputError(
                f"append expects the next {nb} ids of remaining_ids (rows {self.n_done} to "
                f"{self.n_done + nb} of {self.n_rows}): first expected {expected[:5].tolist()}, "
                f"got {ids[:5].tolist()}. Append batches in the order of writer.remaining_ids."
            )
        check_type("arrays", arrays, dict)
        missing = [k for k in self._fields if k not in arrays]
        extra = [k for k in arrays if k not in self._fields]
        if missing or extra:
            raise BadInputError(
                f"arrays must have exactly the fields {list(self._fields)}; missing {missing}, "
                f"unexpected {extra}."
            )
        batch = {}
        for name, (shape, dt) in self._fields.items():
            arr = np.asarray(arrays[name])
            if arr.shape != (nb, *shape):
                raise BadInputError(
                    f"arrays[{name!r}] has shape {arr.shape}, expected {(nb, *shape)} "
                    f"(n_ids, *row_shape)."
                )
            if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
                raise BadInputError(
                    f"arrays[{name!r}] contains {n_bad} non-finite values (NaN or inf); "
                    "nothing was written. Check the extractor's output."
                )
            with np.errstate(over="ignore", invalid="ignore"):
                out = np.ascontiguousarray(arr, dtype=np.dtype(dt))
            if out.dtype.kind == "f" and not np.isfinite(out).all():
                raise BadInputError(
                    f"arrays[{name!r}] overflows {np.dtype(dt).name} (values up to "
                    f"{np.abs(arr).max()}); nothing was written. Store it as float32."
                )
            batch[name] = out
        start, stop = self.n_done, self.n_done + nb
        rec = [start, stop]
        for name, out in batch.items():
            self._file["fields"][name][start:stop] = out
            rec.append(_crc(out))
        bds = self._file["_batches"]
        bds.resize(len(bds) + 1, axis=0)
        bds[-1] = rec
        self._file.flush()
        self.n_done = stop

    def _verify_all(self) -> None:
        done = _verified_prefix(self._file, list(self._fields))[0]
        if done != self.n_rows:
            self._file.close()
            self.partial_path.unlink()
            raise BadInputError(
                f"{str(self.partial_path)!r} failed verification after resuming over a damaged "
                "partial; it was removed. Run the extraction again to recompute it."
            )

    def close(self) -> Path | None:
        """Finish: rename onto :attr:`path` when every row is written.

        Returns
        -------
        path : Path | None
            The complete store, or None when rows remain (the partial is kept for a resume).
        """
        if self._closed:
            return self.path if self.path.exists() else None
        self._closed = True
        remaining = self.n_rows - self.n_done
        if remaining:
            self._file.flush()
            self._file.close()
            logger.info(
                "%s: %d of %d rows remain; kept for a later resume",
                self.partial_path,
                remaining,
                self.n_rows,
            )
            return None
        if self._dirty:
            self._verify_all()
        self._file.attrs["complete"] = True
        self._file.flush()
        self._file.close()
        fd = os.open(self.partial_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.partial_path, self.path)
        logger.info("wrote feature store %s (%d rows)", self.path, self.n_rows)
        return self.path

    def abort(self) -> None:
        """Flush and close, keeping the partial for a later resume."""
        if not self._closed:
            self._closed = True
            try:
                self._file.flush()
            finally:
                self._file.close()

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# -- cache tools ------------------------------------------------------------------------
def _describe(path: Path) -> dict:
    st = path.stat()
    entry = {
        "path": str(path),
        "size_bytes": st.st_size,
        "modified": datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(timespec="seconds"),
        "status": "corrupt",
        "n_rows": None,
        "fields": None,
        "attrs": None,
        "in_use": False,
    }
    try:
        with h5py.File(path, "r") as f:
            entry["attrs"] = json.loads(f.attrs["attrs"])
            entry["fields"] = list(_read_fields(f))
            entry["n_rows"] = int(f["stimulus_ids"].shape[0])
            complete = bool(f.attrs.get("complete", False))
    except OSError as err:
        if _is_lock_error(err):  # a live writer holds it
            entry.update(status="partial", in_use=True)
        return entry
    except (KeyError, ValueError, RuntimeError, TypeError):
        return entry
    if path.name.endswith(PARTIAL_SUFFIX):
        entry["status"] = "partial"
    elif complete:
        entry["status"] = "complete"
    return entry


def list_stores(cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """Describe every ``*.h5`` and ``*.partial`` file under ``cache_dir`` (recursive).

    Parameters
    ----------
    cache_dir : str | PathLike | None
        Default: :func:`get_cache_dir`.

    Returns
    -------
    stores : list of dict
        ``path``, ``size_bytes``, ``status`` ('complete', 'partial' or 'corrupt'),
        ``n_rows``, ``fields``, ``attrs`` (None where unreadable), ``modified`` (ISO time)
        and ``in_use`` (a partial locked by a running writer).
    """
    root = get_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    if not root.is_dir():
        return []
    files = sorted({*root.rglob("*.h5"), *root.rglob("*" + PARTIAL_SUFFIX)})
    return [_describe(p) for p in files if p.is_file()]


def prune_cache(
    cache_dir: str | os.PathLike | None = None,
    *,
    partial: bool = True,
    corrupt: bool = True,
    older_than_days: float | None = None,
    everything: bool = False,
    dry_run: bool = False,
) -> list[dict]:
    """Remove partial, corrupt, old (or all) stores from the cache.

    Parameters
    ----------
    cache_dir : str | PathLike | None
        Default: :func:`get_cache_dir`.
    partial, corrupt : bool
        Remove partial / corrupt files. Partials locked by a running writer are kept.
    older_than_days : float | None
        Also remove complete stores not modified for this many days.
    everything : bool
        Remove every store (still sparing partials in use).
    dry_run : bool
        Only report what would be removed.

    Returns
    -------
    removed : list of dict
        Entries of :func:`list_stores` that were (or would be) removed.
    """
    cutoff = None if older_than_days is None else time.time() - float(older_than_days) * 86400
    removed = []
    for entry in list_stores(cache_dir):
        if entry["in_use"]:
            continue
        status = entry["status"]
        mtime = Path(entry["path"]).stat().st_mtime
        if (
            everything
            or (partial and status == "partial")
            or (corrupt and status == "corrupt")
            or (cutoff is not None and mtime < cutoff)
        ):
            removed.append(entry)
            if not dry_run:
                Path(entry["path"]).unlink(missing_ok=True)
    verb = "would remove" if dry_run else "removed"
    logger.info("%s %d feature store file(s)", verb, len(removed))
    return removed
