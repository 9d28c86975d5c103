"""Synthetic multi-subject responses with a shared latent structure.

:func:`make_multisubject` simulates what cross-subject alignment assumes: every stimulus
has a latent description ``z`` common to all subjects, each subject's voxels see it
through their own random mixing, and the decoding targets (the stimuli's "CLIP
embeddings") are a fixed nonlinear function of the same ``z``.

Forward model (all draws from one ``numpy.random.default_rng(seed)``)
    ``z ~ N(0, I)``, shape ``(n_stimuli, latent_dim)``, one row per stimulus.
    Targets ``Y = tanh(z @ A) + ((z @ B)² - 1) / √2`` with ``A, B ~ N(0, 1/latent_dim)`` of
    shape ``(latent_dim, target_dim)`` (so ``z @ A`` has unit variance). The quadratic part
    is uncorrelated with every linear function of ``z``: like the part of a real stimulus
    embedding that the brain does not carry linearly, it caps how well any linear decoder
    can do, and decoders trained on few samples overfit it.
    Subject ``s`` has ``n_voxels[s]`` voxels, a mixing ``M_s ~ N(0, 1/latent_dim)`` of shape
    ``(latent_dim, n_voxels[s])``, a voxel offset ``b_s ~ N(0, 0.5²)`` and responses
    ``X_s = f(z @ M_s) + b_s + noise · ε``, ``ε ~ N(0, 1)``, ``f`` = ``tanh``, ``relu``
    (``max(0, ·)``) or the identity (``'linear'``).

Stimuli
    Ids ``0 .. n_shared - 1`` are seen by every subject (split ``'test'``, like NSD's
    shared1000); subject ``s`` (0-based position) also sees its own ``n_unique`` stimuli
    with ids ``n_shared + s · n_unique + j`` (split ``'train'``). Each stimulus is shown
    once; a subject's trials are in a random order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..utils.validation import BadInputError, BadTypeError, check_option, check_positive_int
from ._trials import Trials

__all__ = ["MultiSubject", "make_multisubject", "NONLINEARITIES"]

NONLINEARITIES = ("tanh", "relu", "linear")
OFFSET_SD = 0.5


@dataclass
class MultiSubject:
    """Simulated responses of several subjects to partly shared stimuli.

    Attributes
    ----------
    trials : dict of int to Trials
        Subject number (1-based) -> its trials; ``X`` is ``(n_trials, n_voxels[s])``.
    targets : ndarray of shape (n_stimuli, target_dim)
        Decoding target of every stimulus (row = global stimulus id).
    latents : ndarray of shape (n_stimuli, latent_dim)
        The shared latent ``z`` of every stimulus (row = global stimulus id).
    mixings : dict of int to ndarray of shape (latent_dim, n_voxels[s])
        Each subject's mixing ``M_s``.
    info : dict
        Parameters, the forward model in words, and the voxel counts.
    """

    trials: dict[int, Trials]
    targets: np.ndarray
    latents: np.ndarray
    mixings: dict[int, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def subjects(self) -> list[int]:
        """Subject numbers, ascending."""
        return sorted(self.trials)

    @property
    def shared_ids(self) -> np.ndarray:
        """Ids of the stimuli every subject saw, ascending."""
        return np.arange(self.info["n_shared"], dtype=np.int64)

    def responses(self, subject: int, stimulus_ids) -> np.ndarray:
        """Responses of ``subject`` to ``stimulus_ids``, rows in the order of the ids.

        Parameters
        ----------
        subject : int
            Subject number (a key of :attr:`trials`).
        stimulus_ids : array-like of int, shape (n,)
            Stimuli the subject saw.

        Returns
        -------
        X : ndarray of shape (n, n_voxels)
        """
        if subject not in self.trials:
            raise BadInputError(f"subject must be one of {self.subjects}, got {subject!r} instead.")
        tr = self.trials[subject]
        ids = np.asarray(stimulus_ids, dtype=np.int64).reshape(-1)
        order = np.argsort(tr.stimulus_ids)
        pos = np.searchsorted(tr.stimulus_ids[order], ids)
        pos = np.minimum(pos, len(order) - 1)
        found = tr.stimulus_ids[order][pos] == ids
        if not found.all():
            raise BadInputError(
                f"stimulus_ids: subject {subject} did not see stimulus id(s) "
                f"{ids[~found][:5].tolist()}; pick ids from its trials' stimulus_ids."
            )
        return tr.X[order[pos]]


def _nonlinear(name: str, a: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.maximum(a, 0.0)
    return a


def _check_voxels(voxels, n_subjects: int) -> list[int]:
    if voxels is None:
        return [300 + 50 * s for s in range(n_subjects)]
    if isinstance(voxels, int | np.integer) and not isinstance(voxels, bool):
        return [check_positive_int("voxels", voxels)] * n_subjects
    if not isinstance(voxels, Sequence | np.ndarray) or isinstance(voxels, str):
        raise BadTypeError(
            f"voxels must be an int or a sequence of ints (one per subject), got "
            f"{type(voxels).__name__} ({voxels!r}) instead."
        )
    counts = [check_positive_int("voxels", v) for v in voxels]
    if len(counts) != n_subjects:
        raise BadInputError(
            f"voxels has {len(counts)} entries but n_subjects={n_subjects}; give one voxel "
            "count per subject or a single int."
        )
    return counts


def make_multisubject(
    n_subjects: int = 4,
    *,
    n_shared: int = 100,
    n_unique: int = 400,
    latent_dim: int = 32,
    target_dim: int = 64,
    voxels: int | Sequence[int] | None = None,
    noise: float = 1.0,
    nonlinearity: str = "tanh",
    seed: int = 0,
) -> MultiSubject:
    """Simulate several subjects whose voxels mix one shared latent space differently.

    The forward model is in this module's docstring; ``info['forward_model']`` repeats it.

    Parameters
    ----------
    n_subjects : int
        Number of subjects (numbered 1 .. n_subjects).
    n_shared : int
        Stimuli seen by every subject (split ``'test'``).
    n_unique : int
        Stimuli seen by one subject only, per subject (split ``'train'``); may be 0.
    latent_dim : int
        Dimension of the shared latent ``z``.
    target_dim : int
        Dimension of the decoding targets.
    voxels : int | sequence of int | None
        Voxels of each subject (one count for all, or one per subject); None gives
        ``300, 350, 400, ...`` (300 + 50 per subject).
    noise : float
        Standard deviation of the measurement noise (>= 0).
    nonlinearity : 'tanh' | 'relu' | 'linear'
        The voxel nonlinearity ``f``.
    seed : int
        Seed; the same arguments give the same data.

    Returns
    -------
    data : MultiSubject
    """
    n_subjects = check_positive_int("n_subjects", n_subjects)
    n_shared = check_positive_int("n_shared", n_shared)
    n_unique = check_positive_int("n_unique", n_unique, minimum=0)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    target_dim = check_positive_int("target_dim", target_dim)
    counts = _check_voxels(voxels, n_subjects)
    check_option("nonlinearity", nonlinearity, NONLINEARITIES)
    if isinstance(noise, bool) or not isinstance(noise, int | float | np.floating | np.integer):
        raise BadTypeError(f"noise must be a number, got {type(noise).__name__} instead.")
    if not np.isfinite(noise) or noise < 0:
        raise BadInputError(f"noise must be a finite number >= 0, got {noise!r} instead.")
    seed = check_positive_int("seed", seed, minimum=0)

    rng = np.random.default_rng(seed)
    n_stimuli = n_shared + n_subjects * n_unique
    z = rng.standard_normal((n_stimuli, latent_dim))
    a = rng.standard_normal((latent_dim, target_dim)) / np.sqrt(latent_dim)
    b = rng.standard_normal((latent_dim, target_dim)) / np.sqrt(latent_dim)
    targets = (np.tanh(z @ a) + ((z @ b) ** 2 - 1) / np.sqrt(2)).astype(np.float32)
    trials, mixings = {}, {}
    for s, n_vox in enumerate(counts):
        subject = s + 1
        mixing = rng.standard_normal((latent_dim, n_vox)) / np.sqrt(latent_dim)
        offset = rng.normal(0.0, OFFSET_SD, n_vox)
        unique = n_shared + s * n_unique + np.arange(n_unique)
        ids = rng.permutation(np.concatenate([np.arange(n_shared), unique]))
        signal = _nonlinear(nonlinearity, z[ids] @ mixing)
        X = signal + offset + noise * rng.standard_normal((len(ids), n_vox))
        trials[subject] = Trials(
            X=X.astype(np.float32),
            stimulus_ids=ids,
            split=np.where(ids < n_shared, "test", "train"),
            session=np.ones(len(ids), dtype=np.int64),
            repeat=np.zeros(len(ids), dtype=np.int64),
            subject=subject,
            info={"dataset": "synthetic_multisubject", "units": "a.u.", "n_voxels": n_vox},
        )
        mixings[subject] = mixing.astype(np.float32)
    info = {
        "dataset": "synthetic_multisubject",
        "n_subjects": n_subjects,
        "n_shared": n_shared,
        "n_unique": n_unique,
        "n_stimuli": n_stimuli,
        "latent_dim": latent_dim,
        "target_dim": target_dim,
        "n_voxels": dict(zip(sorted(trials), counts, strict=True)),
        "noise": float(noise),
        "nonlinearity": nonlinearity,
        "seed": seed,
        "forward_model": (
            f"z ~ N(0, I_{latent_dim}) per stimulus; targets = tanh(z @ A) + "
            f"((z @ B)^2 - 1) / sqrt(2), A, B ~ N(0, 1/{latent_dim}); X_s = {nonlinearity}(z @ M_s) + b_s + {noise} * eps, "
            f"M_s ~ N(0, 1/{latent_dim}) of shape ({latent_dim}, n_voxels_s), "
            f"b_s ~ N(0, {OFFSET_SD}^2) per voxel, eps ~ N(0, 1)"
        ),
        "target_maps": {"A": a.astype(np.float32), "B": b.astype(np.float32)},
    }
    return MultiSubject(
        trials=trials, targets=targets, latents=z.astype(np.float32), mixings=mixings, info=info
    )
