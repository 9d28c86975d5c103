"""Artifact files passed between stages (HDF5 written atomically)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from ..datasets import Trials
from ..utils.io import atomic_path
from ..utils.validation import BadInputError

__all__ = ["save_trials", "load_trials"]


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def save_trials(path: Path, trials: Trials) -> Path:
    """Write a :class:`Trials` container to HDF5 (X float32, chunked by trials)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(
                "X",
                data=trials.X.astype(np.float32),
                chunks=(min(len(trials), 256), *trials.X.shape[1:]),  # 2-D or 3-D X
                compression="lzf",
            )
            f["stimulus_ids"] = np.asarray(trials.stimulus_ids, dtype=np.int64)
            f["split"] = np.asarray(trials.split).astype("S")
            f["session"] = np.asarray(trials.session, dtype=np.int64)
            f["repeat"] = np.asarray(trials.repeat, dtype=np.int64)
            f["subject"] = np.asarray(trials.subject, dtype=np.int64)
            f["run"] = np.asarray(trials.run, dtype=np.int64)
            f.attrs["info"] = json.dumps(trials.info, default=_jsonable)
    return path


def load_trials(path: Path) -> Trials:
    """Read what :func:`save_trials` wrote."""
    try:
        with h5py.File(path, "r") as f:
            return Trials(
                X=f["X"][()],
                stimulus_ids=f["stimulus_ids"][()],
                split=f["split"][()].astype(str),
                session=f["session"][()],
                repeat=f["repeat"][()],
                subject=f["subject"][()],
                info=json.loads(f.attrs["info"]),
                run=f["run"][()] if "run" in f else None,
            )
    except OSError as err:
        raise BadInputError(
            f"{path} is corrupt or truncated ({err}); re-run the stage that wrote it with --force."
        ) from None
