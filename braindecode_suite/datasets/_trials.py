"""The trial container every dataset adapter returns.

A :class:`Trials` holds one brain array whose first axis is the trial, plus
per-trial metadata (stimulus id, split, session, repeat, subject) and a free
``info`` dict for dataset-level facts (units, source files, voxel indices).
It is deliberately generic: fMRI betas are ``(n_trials, n_voxels)``, EEG/MEG
epochs ``(n_trials, n_channels, n_times)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..utils.validation import BadInputError

__all__ = ["Trials"]


@dataclass
class Trials:
    """Brain responses of a set of trials with their metadata.

    Parameters
    ----------
    X : ndarray of shape (n_trials, ...)
        Brain data, float32 (e.g. (n_trials, n_voxels) for fMRI).
    stimulus_ids : ndarray of int64, shape (n_trials,)
        Stimulus of each trial (for NSD: 0-based 73k ids = rows of imgBrick).
    split : ndarray of str, shape (n_trials,)
        ``'train'`` or ``'test'`` (other labels are allowed).
    session : ndarray of int64, shape (n_trials,)
        Session number of each trial (1-based as the dataset counts them).
    repeat : ndarray of int64, shape (n_trials,)
        0 for the first presentation of a stimulus, 1 for the second, ...
    subject : int or ndarray of int64, shape (n_trials,)
        Subject number; a scalar is broadcast to every trial.
    run : ndarray of int64, shape (n_trials,) | None
        Run number within the session (as the dataset counts them); ``None`` (datasets
        without runs) stores 0 for every trial.
    info : dict
        Dataset-level metadata (units, dataset, source files, ...).
    """

    X: np.ndarray
    stimulus_ids: np.ndarray
    split: np.ndarray
    session: np.ndarray
    repeat: np.ndarray
    subject: Any
    info: dict = field(default_factory=dict)
    run: Any = None

    def __post_init__(self):
        self.X = np.asarray(self.X)
        if self.X.ndim < 1:
            raise BadInputError(f"X must have a trial axis, got a {self.X.ndim}-D array.")
        n = self.X.shape[0]
        self.stimulus_ids = np.asarray(self.stimulus_ids, dtype=np.int64).reshape(-1)
        self.split = np.asarray(self.split, dtype=str).reshape(-1)
        self.session = np.asarray(self.session, dtype=np.int64).reshape(-1)
        self.repeat = np.asarray(self.repeat, dtype=np.int64).reshape(-1)
        subject = np.asarray(self.subject, dtype=np.int64)
        self.subject = np.full(n, int(subject)) if subject.ndim == 0 else subject.reshape(-1)
        if self.run is None:
            self.run = np.zeros(n, dtype=np.int64)
        else:
            self.run = np.asarray(self.run, dtype=np.int64).reshape(-1)
        for name in ("stimulus_ids", "split", "session", "repeat", "subject", "run"):
            length = len(getattr(self, name))
            if length != n:
                raise BadInputError(
                    f"Trials: {name} has {length} entries but X has {n} trials "
                    f"(X.shape={self.X.shape}); every per-trial field needs one entry per trial."
                )
        if self.info is None:
            self.info = {}

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def n_trials(self) -> int:
        return len(self)

    def select(self, mask) -> Trials:
        """Return the trials picked by a boolean mask or an index array (a copy)."""
        mask = np.asarray(mask)
        if mask.dtype == bool:
            if mask.shape != (len(self),):
                raise BadInputError(
                    f"select: a boolean mask needs shape ({len(self)},), got {mask.shape}."
                )
        elif mask.size and mask.dtype.kind not in "iu":
            raise BadInputError(f"select: mask must be boolean or integer, got {mask.dtype}.")
        else:
            mask = mask.astype(np.int64)
        return Trials(
            X=self.X[mask],
            stimulus_ids=self.stimulus_ids[mask],
            split=self.split[mask],
            session=self.session[mask],
            repeat=self.repeat[mask],
            subject=self.subject[mask],
            info=copy.deepcopy(self.info),
            run=self.run[mask],
        )

    def __repr__(self) -> str:
        splits = {s: int(np.sum(self.split == s)) for s in np.unique(self.split)}
        return (
            f"<Trials | {len(self)} trials, X {self.X.shape} {self.X.dtype}, "
            f"splits {splits}, dataset={self.info.get('dataset')!r}>"
        )
