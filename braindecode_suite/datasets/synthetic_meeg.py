"""Synthetic M/EEG recordings that carry a known, linear-in-latent evoked signal.

For testing decoders end to end: every concept ``c`` has an embedding ``z_c`` (its "CLIP
image embedding" or "speech latent"), and every epoch of subject ``s`` showing ``c`` is::

    x = M_s · Σ_j A[:, j] z_c[j] w_j(t)  +  noise

with ``A`` a spatial pattern per latent dimension (unit-norm columns), ``w_j`` an ERP-like
waveform (a positive then a negative Gaussian deflection; the latency varies with ``j``
between 80 and 250 ms), ``M_s = I + subject_mixing · G_s / sqrt(n_channels)`` a
subject-specific channel mixing (so subjects differ but share structure), and noise half
pink (1/f power) and half white, scaled so that the mean signal power over the epoch divided
by the noise power equals ``snr``. Training and test concepts are disjoint, as in THINGS-EEG2.
"""

from __future__ import annotations

import numpy as np

from ..utils.validation import BadInputError, check_array, check_positive_int
from ._trials import Trials

__all__ = ["make_synthetic_meeg", "pink_noise"]


def pink_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Noise with 1/f power along the last axis, unit variance per series."""
    n = shape[-1]
    spec = rng.standard_normal((*shape[:-1], n // 2 + 1)) + 1j * rng.standard_normal(
        (*shape[:-1], n // 2 + 1)
    )
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    out = np.fft.irfft(spec / np.sqrt(f), n=n, axis=-1)
    out -= out.mean(-1, keepdims=True)
    return out / (out.std(-1, keepdims=True) + 1e-12)


def _waveforms(n_dims: int, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    latency = np.linspace(0.08, 0.25, n_dims)[rng.permutation(n_dims)]
    w = np.exp(-0.5 * ((times[None] - latency[:, None]) / 0.03) ** 2) - 0.6 * np.exp(
        -0.5 * ((times[None] - latency[:, None] - 0.1) / 0.05) ** 2
    )
    return w / (np.sqrt((w**2).mean(1, keepdims=True)) + 1e-12)


def make_synthetic_meeg(
    n_subjects: int = 2,
    n_concepts_train: int = 100,
    n_concepts_test: int = 20,
    n_reps: int = 4,
    n_channels: int = 16,
    n_times: int = 100,
    sfreq: float = 100.0,
    target_dim: int = 16,
    snr: float = 1.0,
    seed: int = 0,
    *,
    subject_mixing: float = 0.3,
    embeddings=None,
    tmin: float = -0.1,
) -> tuple[list[Trials], np.ndarray]:
    """Simulated epochs of several subjects viewing (or hearing) concepts with known latents.

    Parameters
    ----------
    n_subjects : int
        Subjects (numbered 1 ... n_subjects in ``Trials.subject``).
    n_concepts_train, n_concepts_test : int
        Disjoint concepts: stimulus ids ``0 ... n_train - 1`` are ``'train'``, the next
        ``n_test`` are ``'test'``.
    n_reps : int
        Repetitions of every concept per subject.
    n_channels, n_times : int
        Epoch shape.
    sfreq : float
        Sampling rate (Hz); times run from ``tmin``.
    target_dim : int
        Size of the concept embeddings (ignored when ``embeddings`` is given).
    snr : float
        Signal power / noise power per epoch (> 0).
    seed : int
        Seed of everything random.
    subject_mixing : float
        Strength of the subject-specific channel mixing (0: all subjects alike).
    embeddings : ndarray of shape (n_train + n_test, d) or None
        Use these concept embeddings (e.g. speech latents) instead of Gaussian ones; the
        signal is built from their z-scored columns.
    tmin : float
        Time of the first sample (s).

    Returns
    -------
    trials : list of Trials
        One per subject; ``X`` float32 (n_concepts * n_reps, n_channels, n_times), trials
        ordered concept by concept; ``info`` holds ``sfreq``, ``times``, ``ch_names``,
        ``stimulus_names``, ``snr`` and the forward model (``patterns``, ``waveforms``,
        ``mixing``).
    embeddings : ndarray of shape (n_train + n_test, d), float32
        Concept embeddings; row ``i`` is the target of stimulus id ``i``.
    """
    n_subjects = check_positive_int("n_subjects", n_subjects)
    n_train = check_positive_int("n_concepts_train", n_concepts_train, minimum=2)
    n_test = check_positive_int("n_concepts_test", n_concepts_test, minimum=2)
    n_reps = check_positive_int("n_reps", n_reps)
    n_channels = check_positive_int("n_channels", n_channels)
    n_times = check_positive_int("n_times", n_times, minimum=8)
    seed = check_positive_int("seed", seed, minimum=0)
    for name, v in (("sfreq", sfreq), ("snr", snr)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise BadInputError(f"{name} must be a number > 0, got {v!r}.")
    if isinstance(subject_mixing, bool) or not isinstance(subject_mixing, int | float):
        raise BadInputError(f"subject_mixing must be a number >= 0, got {subject_mixing!r}.")
    if subject_mixing < 0:
        raise BadInputError(f"subject_mixing must be >= 0, got {subject_mixing}.")
    rng = np.random.default_rng(seed)
    n_concepts = n_train + n_test
    if embeddings is None:
        target_dim = check_positive_int("target_dim", target_dim)
        emb = rng.standard_normal((n_concepts, target_dim))
    else:
        emb = check_array("embeddings", embeddings, ndim=2).astype(np.float64)
        if emb.shape[0] != n_concepts:
            raise BadInputError(
                f"embeddings must have n_concepts_train + n_concepts_test = {n_concepts} rows, "
                f"got {emb.shape}."
            )
    d = emb.shape[1]
    z = (emb - emb.mean(0)) / (emb.std(0) + 1e-12)
    times = tmin + np.arange(n_times) / float(sfreq)
    patterns = rng.standard_normal((n_channels, d))
    patterns /= np.linalg.norm(patterns, axis=0, keepdims=True)
    waves = _waveforms(d, times, rng)
    # clean evoked response of every concept: (n_concepts, n_channels, n_times)
    clean = np.einsum("cj,kj,jt->ckt", z, patterns, waves)
    signal_power = float((clean**2).mean())
    noise_sd = np.sqrt(signal_power / float(snr))
    stim = np.repeat(np.arange(n_concepts), n_reps)
    trials, mixings = [], []
    for s in range(n_subjects):
        mix = np.eye(n_channels) + subject_mixing * rng.standard_normal(
            (n_channels, n_channels)
        ) / np.sqrt(n_channels)
        mixings.append(mix)
        evoked = np.einsum("ik,ckt->cit", mix, clean)[stim]
        noise = np.sqrt(0.5) * (pink_noise(rng, evoked.shape) + rng.standard_normal(evoked.shape))
        X = (evoked + noise_sd * noise).astype(np.float32)
        trials.append(
            Trials(
                X=X,
                stimulus_ids=stim,
                split=np.where(stim < n_train, "train", "test"),
                session=np.ones(len(stim), dtype=np.int64),
                repeat=np.tile(np.arange(n_reps), n_concepts),
                subject=s + 1,
                info={
                    "dataset": "synthetic_meeg",
                    "units": "arbitrary",
                    "sfreq": float(sfreq),
                    "times": times,
                    "ch_names": [f"SYN{i:03d}" for i in range(n_channels)],
                    "stimulus_names": np.array([f"concept{i:04d}" for i in range(n_concepts)]),
                    "snr": float(snr),
                    "patterns": patterns,
                    "waveforms": waves,
                    "mixing": mix,
                    "simulated": True,
                },
            )
        )
    return trials, emb.astype(np.float32)
