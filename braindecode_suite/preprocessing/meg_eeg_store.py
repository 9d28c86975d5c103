"""Preprocess M/EEG recordings once into an HDF5 epoch store, one recording at a time.

Why not :class:`~braindecode_suite.features.store.FeatureStore`? It lives in the features
layer, above preprocessing (which may not import it), and its contract does not fit epochs:
it needs every row id up front and unique, while the number of epochs of a recording is
known only after reading and epoching it, and a stimulus is shown many times. This store
follows the same conventions with h5py directly: chunked, lzf-compressed float32 rows, JSON
attributes, a temporary ``<path>.partial`` renamed onto ``path`` only when complete, and
resume at recording granularity.

Layout::

    /                 attrs: format, format_version, config (JSON), ch_names (JSON), sfreq,
                             sensor_info (JSON, first recording), complete
    /times            (n_times,) seconds relative to the event
    /recordings/<key>/X              (n_epochs, n_channels, n_times) float32
    /recordings/<key>/event_index, sample, onset, event_code, event, stimulus_id
    /recordings/<key> attrs: subject, session, run, source, report (JSON), sensor_info (JSON),
                             complete
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..utils.logging import logger, progress_disabled
from ..utils.validation import BadInputError, check_option, check_type
from .meg_eeg import (
    PreprocessConfig,
    Recording,
    _check_events,
    _events_from_raw,
    iter_epoch_blocks,
    preprocess_raw,
    sensor_info,
)

__all__ = ["EpochStore", "epochs_to_store"]

FORMAT = "bds-meeg-epochs"
FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"
_CHUNK_BYTES = 2**20
_STR = h5py.string_dtype("utf-8")
_META = ("event_index", "sample", "onset", "event_code", "event", "stimulus_id")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _config_json(config: PreprocessConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, default=str)


def _as_recordings(recordings: Iterable[Any]) -> list[Recording]:
    out = []
    for i, rec in enumerate(recordings):
        if isinstance(rec, Recording):
            out.append(rec)
        elif isinstance(rec, (str, os.PathLike)):
            path = Path(rec)
            out.append(Recording(key=path.name.split(".")[0], source=path))
        else:
            raise BadInputError(
                f"recordings[{i}] must be a Recording or a path, got {type(rec).__name__}."
            )
    keys = [r.key for r in out]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise BadInputError(f"recordings: duplicated keys {dup}; every recording needs its own.")
    if not out:
        raise BadInputError("recordings is empty; give at least one recording.")
    return out


def _open_partial(path: Path, config: PreprocessConfig) -> h5py.File:
    """Open (resume) or create the partial file; a finished store is reopened as a partial."""
    partial = _partial(path)
    reopened = path.exists() and not partial.exists()
    if reopened:
        os.replace(path, partial)  # adding recordings to a finished store
    if partial.exists():
        try:
            f = h5py.File(partial, "r+")
        except OSError as err:
            if reopened:
                os.replace(partial, path)
                raise BadInputError(f"The epoch store {str(path)!r} is corrupt ({err}).") from None
            logger.warning("discarding %s: it does not open (%s); starting over", partial, err)
            partial.unlink()
        else:
            why = None
            if f.attrs.get("format") != FORMAT:
                why = "it is not an epoch store"
            elif int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
                why = "it was written by another version of this format"
            elif f.attrs["config"] != _config_json(config):
                why = f"it was made with another PreprocessConfig ({f.attrs['config']})"
            if why is None:
                f.attrs["complete"] = False
                return f
            f.close()
            if reopened:
                os.replace(partial, path)
            raise BadInputError(
                f"Cannot add to {str(path if reopened else partial)!r}: {why}. Use another "
                "path, or delete the file to recompute."
            )
    f = h5py.File(partial, "w")
    f.attrs.update(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "config": _config_json(config),
         "complete": False}
    )  # fmt: skip
    f.create_group("recordings")
    return f


def _done_keys(f: h5py.File) -> set[str]:
    done = set()
    for key in list(f["recordings"]):
        if bool(f["recordings"][key].attrs.get("complete", False)):
            done.add(key)
        else:  # left by a killed run: recompute it
            logger.warning("discarding the incomplete recording %r of %s", key, f.filename)
            del f["recordings"][key]
    return done


def _convert_events(events: np.ndarray, sfreq_in: float, first_in: int, raw_out) -> np.ndarray:
    """Map event samples of the source recording onto the preprocessed one."""
    ratio = raw_out.info["sfreq"] / sfreq_in
    out = events.copy()
    rel = (events[:, 0] - first_in) * ratio
    out[:, 0] = np.rint(rel).astype(np.int64) + raw_out.first_samp
    return out


def _check_consistent(f: h5py.File, rec: Recording, raw, times: np.ndarray) -> None:
    names = list(raw.ch_names)
    if "ch_names" not in f.attrs:
        f.attrs["ch_names"] = json.dumps(names)
        f.attrs["sfreq"] = float(raw.info["sfreq"])
        f.attrs["sensor_info"] = json.dumps(sensor_info(raw.info))
        f.create_dataset("times", data=times)
        return
    first = json.loads(f.attrs["ch_names"])
    if names != first:
        missing = [c for c in first if c not in names]
        extra = [c for c in names if c not in first]
        order = " (same names, other order)" if not missing and not extra else ""
        raise BadInputError(
            f"Recording {rec.key!r} has other channels than the store's first recording: "
            f"missing {missing[:10]}, extra {extra[:10]}{order}. "
            "Give PreprocessConfig(picks=...) naming one channel set for every recording."
        )
    if len(times) != len(f["times"]):
        raise BadInputError(
            f"Recording {rec.key!r} gives epochs of {len(times)} samples, the store's "
            f"{len(f['times'])} (sampling rate {raw.info['sfreq']} vs {f.attrs['sfreq']} Hz)."
        )


def _write_recording(f, rec: Recording, config: PreprocessConfig, block_bytes: int) -> int:
    import mne

    raw_in = rec.load()
    check_type(f"Recording {rec.key!r}", raw_in, mne.io.BaseRaw)
    sfreq_in = float(raw_in.info["sfreq"])
    if config.sfreq is None and "sfreq_in" in f.attrs:
        if not math.isclose(sfreq_in, float(f.attrs["sfreq_in"])):
            raise BadInputError(
                f"Recording {rec.key!r} is sampled at {sfreq_in} Hz but the store's recordings "
                f"at {float(f.attrs['sfreq_in'])} Hz. Set PreprocessConfig(sfreq=...) to "
                "resample every recording to one rate."
            )
    if config.sfreq is None and "sfreq_in" not in f.attrs:
        f.attrs["sfreq_in"] = sfreq_in
    first_in = int(raw_in.first_samp)
    events, event_id = rec.events, rec.event_id
    where = f"recording {rec.key!r}"
    if events is None:
        # read events before preprocessing (picks may drop the stim channel) and move them to
        # the new rate by rounding, as raw.resample(events=...) does
        events, names = _events_from_raw(raw_in)
        event_id = names if event_id is None and names else event_id
    events = _check_events(raw_in, events, where)
    raw, report = preprocess_raw(
        raw_in, config, copy=isinstance(rec.source, mne.io.BaseRaw), return_report=True
    )
    events = _convert_events(events, sfreq_in, first_in, raw)
    del raw_in
    grp = f["recordings"].create_group(rec.key)
    stim = None if rec.stimulus_ids is None else np.asarray(rec.stimulus_ids, dtype=np.int64)
    if stim is not None and stim.shape != (len(events),):
        raise BadInputError(
            f"Recording {rec.key!r}: stimulus_ids has shape {stim.shape}, expected one per "
            f"event ({len(events)},)."
        )
    n = 0
    for data, times, meta in iter_epoch_blocks(
        raw, events, config, event_id=event_id, block_bytes=block_bytes, where=where
    ):
        if n == 0:
            _check_consistent(f, rec, raw, times)
            epoch_bytes = data[0].nbytes
            chunk = max(1, _CHUNK_BYTES // epoch_bytes)
            grp.create_dataset(
                "X", shape=(0, *data.shape[1:]), maxshape=(None, *data.shape[1:]),
                dtype=np.float32, chunks=(chunk, *data.shape[1:]), compression="lzf",
            )  # fmt: skip
            for name in _META:
                kind = _STR if name == "event" else (np.float64 if name == "onset" else np.int64)
                grp.create_dataset(name, shape=(0,), maxshape=(None,), dtype=kind, chunks=(4096,))
        idx = meta["event_index"].to_numpy()
        columns = {
            "event_index": idx,
            "sample": meta["sample"].to_numpy(),
            "onset": meta["onset"].to_numpy(),
            "event_code": meta["event_code"].to_numpy(),
            "event": meta["event"].astype(str).to_numpy().astype(object),
            "stimulus_id": stim[idx] if stim is not None else meta["event_code"].to_numpy(),
        }
        m = len(data)
        grp["X"].resize(n + m, axis=0)
        grp["X"][n : n + m] = data
        for name, values in columns.items():
            grp[name].resize(n + m, axis=0)
            grp[name][n : n + m] = values
        n += m
    grp.attrs.update(
        {
            "subject": rec.subject,
            "session": rec.session,
            "run": rec.run,
            "source": str(rec.source) if isinstance(rec.source, (str, os.PathLike)) else "",
            "report": json.dumps(report, default=str),
            "sensor_info": json.dumps(sensor_info(raw.info)),
            "extra": json.dumps(rec.extra, default=str),
            "n_epochs": n,
            "complete": True,
        }
    )
    f.flush()
    return n


def epochs_to_store(
    path: str | os.PathLike,
    recordings: Sequence[Recording | str | os.PathLike],
    config: PreprocessConfig,
    *,
    block_bytes: int = 64 * 2**20,
) -> Path:
    """Preprocess and epoch recordings one at a time into an HDF5 epoch store.

    Parameters
    ----------
    path : str | PathLike
        Final ``.h5`` path; data go to ``<path>.partial`` until every recording is in.
    recordings : sequence of Recording | path
        Recordings to add (a path becomes ``Recording(key=<file stem>, source=path)``).
        Recordings whose key is already complete in the store (or in a partial left by an
        interrupted run) are skipped without being read.
    config : PreprocessConfig
        Must equal the config the store was made with.
    block_bytes : int
        Epochs are written in blocks of at most this many bytes (float64 before casting).

    Returns
    -------
    path : Path
        The complete store; read it with :class:`EpochStore`.
    """
    from tqdm.auto import tqdm

    check_type("path", path, (str, os.PathLike))
    check_type("config", config, PreprocessConfig)
    path = Path(path).expanduser()
    if path.name.endswith(PARTIAL_SUFFIX):
        raise BadInputError(f"path must be the final store path, not a partial: {str(path)!r}.")
    recs = _as_recordings(recordings)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = _open_partial(path, config)
    try:
        done = _done_keys(f)
        todo = [r for r in recs if r.key not in done]
        if len(todo) < len(recs):
            logger.info("%s: %d recording(s) already stored, skipped", path, len(recs) - len(todo))
        for rec in tqdm(todo, desc="preprocessing", unit="rec", disable=progress_disabled()):
            n = _write_recording(f, rec, config, block_bytes)
            logger.info("%s: stored %d epochs of %r", path.name, n, rec.key)
        f.attrs["complete"] = True
        f.flush()
    except BaseException:
        f.close()
        raise
    f.close()
    os.replace(_partial(path), path)
    return path


class EpochStore:
    """Read an epoch store written by :func:`epochs_to_store`.

    Parameters
    ----------
    path : str | PathLike

    Attributes
    ----------
    keys : list of str
        Recordings in the store.
    ch_names : list of str
    sfreq : float
    times : ndarray of shape (n_times,)
    config : dict
        The PreprocessConfig the store was made with.
    sensor_info : dict
        Sensor description of the first recording (:func:`sensor_info`).
    """

    def __init__(self, path: str | os.PathLike):
        check_type("path", path, (str, os.PathLike))
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            hint = (
                " A partial file exists: its run did not finish."
                if _partial(self.path).exists()
                else ""
            )
            raise BadInputError(f"Epoch store {str(self.path)!r} does not exist.{hint}")
        try:
            with h5py.File(self.path, "r") as f:
                if f.attrs.get("format") != FORMAT or not bool(f.attrs.get("complete", False)):
                    raise BadInputError(
                        f"{str(self.path)!r} is not a complete epoch store; delete it and rerun "
                        "epochs_to_store."
                    )
                self.keys = [k for k in f["recordings"]]
                self.config = json.loads(f.attrs["config"])
                self.ch_names = json.loads(f.attrs.get("ch_names", "[]"))
                self.sfreq = float(f.attrs.get("sfreq", np.nan))
                self.sensor_info = json.loads(f.attrs.get("sensor_info", "{}"))
                self.times = f["times"][()] if "times" in f else np.empty(0)
                self.n_epochs = {k: int(f["recordings"][k]["X"].shape[0]) for k in self.keys}
        except OSError as err:
            raise BadInputError(f"Epoch store {str(self.path)!r} is corrupt ({err}).") from None

    def __repr__(self) -> str:
        n = sum(self.n_epochs.values())
        return f"<EpochStore {self.path.name}: {len(self.keys)} recordings, {n} epochs>"

    def recording_info(self, key: str) -> dict:
        """Subject, session, run, source, preprocessing report and sensors of ``key``."""
        check_option("key", key, self.keys)
        with h5py.File(self.path, "r") as f:
            a = f["recordings"][key].attrs
            return {
                "subject": str(a["subject"]),
                "session": str(a["session"]),
                "run": str(a["run"]),
                "source": str(a["source"]),
                "n_epochs": int(a["n_epochs"]),
                "report": json.loads(a["report"]),
                "sensor_info": json.loads(a["sensor_info"]),
                "extra": json.loads(a["extra"]),
            }

    def read(self, key: str, epochs: slice | np.ndarray | None = None):
        """Epochs and metadata of one recording.

        Parameters
        ----------
        key : str
        epochs : slice | array-like of int | None
            Which epochs (default all); an index array is read sorted and without repeats.

        Returns
        -------
        X : ndarray of shape (n_epochs, n_channels, n_times), float32
        metadata : pandas.DataFrame
            ``event_index, sample, onset, event_code, event, stimulus_id`` plus ``recording``,
            ``subject``, ``session``, ``run``.
        """
        import pandas as pd

        check_option("key", key, self.keys)
        sel = slice(None) if epochs is None else epochs
        if not isinstance(sel, slice):
            sel = np.unique(np.asarray(sel, dtype=np.int64))  # h5py wants sorted, unique rows
        with h5py.File(self.path, "r") as f:
            g = f["recordings"][key]
            X = g["X"][sel]
            meta = {
                name: (g[name].asstr()[sel] if name == "event" else g[name][sel]) for name in _META
            }
            attrs = {k: str(g.attrs[k]) for k in ("subject", "session", "run")}
        df = pd.DataFrame(meta)
        df.insert(0, "recording", key)
        for k, v in attrs.items():
            df[k] = v
        return X, df

    def iter_recordings(self) -> Iterator[tuple[str, np.ndarray, Any]]:
        """Yield ``(key, X, metadata)`` one recording at a time (memory bounded per recording)."""
        for key in self.keys:
            X, meta = self.read(key)
            yield key, X, meta
