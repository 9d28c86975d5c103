"""Speech latents: wav2vec 2.0 hidden states averaged over a window (Défossez et al. 2023).

:func:`speech_latents` runs a ``transformers`` ``Wav2Vec2Model`` on audio windows and averages
the hidden states of one layer over time, giving one vector per window (the target a brain
decoder is trained to match). :func:`segment_targets` cuts the windows out of a longer sound
at given onsets (e.g. the word onsets of MEG-MASC's ``info['word_events']``) first.

The model name is a Hugging Face id (``"facebook/wav2vec2-base"``), a local folder saved
with ``save_pretrained``, or ``"tiny"`` / ``"tiny:<seed>"``: a small random-initialised
``Wav2Vec2Config`` model built in code (saved once under ``$BDS_CACHE_DIR/tiny`` and loaded
through the same ``from_pretrained`` call), whose latents carry no meaning; it exists so
that the code path runs offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..utils.devices import resolve_device
from ..utils.hub import explain_missing_weights
from ..utils.io import atomic_dir
from ..utils.logging import logger
from ..utils.tiny import TINY_VERSION, is_tiny, parse_tiny, tiny_cache_dir
from ..utils.validation import BadInputError, check_array, check_positive_int, check_type

__all__ = [
    "WAV2VEC2_SFREQ",
    "load_wav2vec2",
    "segment_targets",
    "speech_latents",
    "tiny_wav2vec2_config",
]

#: Sampling rate wav2vec 2.0 was trained on (Hz); audio is resampled to it.
WAV2VEC2_SFREQ = 16000


def tiny_wav2vec2_config() -> dict:
    """Keyword arguments of a ~30k-parameter ``Wav2Vec2Config`` (hidden size 32, 2 layers).

    Its convolutional feature encoder downsamples by 80 (5 × 4 × 4): 200 frames per second.
    """
    return {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": (16, 16, 16),
        "conv_stride": (5, 4, 4),
        "conv_kernel": (10, 8, 8),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
        "vocab_size": 32,
    }


def _tiny_folder(seed: int) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = tiny_cache_dir() / f"wav2vec2-s{seed}-v{TINY_VERSION}"
    if (folder / "config.json").is_file():
        return folder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Wav2Vec2Model(Wav2Vec2Config(**tiny_wav2vec2_config()))
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        (tmp / "bds_tiny.json").write_text(json.dumps({"seed": seed, "random_weights": True}))
    return folder


def load_wav2vec2(model: str = "facebook/wav2vec2-base", *, device: str = "auto"):
    """A ``Wav2Vec2Model`` in eval mode on ``device``.

    Parameters
    ----------
    model : str
        Hugging Face id, local folder, or ``"tiny"`` / ``"tiny:<seed>"`` (random weights).
    device : 'auto' | 'cpu' | 'cuda' | 'cuda:N'
        Where the model goes.

    Returns
    -------
    transformers.Wav2Vec2Model
    """
    from transformers import Wav2Vec2Model

    check_type("model", model, (str, Path))
    dev = resolve_device(device)
    if is_tiny(model):
        name = str(_tiny_folder(parse_tiny(model)))
        logger.info("wav2vec 2.0 %r has random weights: its latents carry no meaning.", model)
    else:
        name = str(model)
    with explain_missing_weights(
        "wav2vec 2.0 model", name, hint="; model='tiny' gives a random model for tests"
    ):
        net = Wav2Vec2Model.from_pretrained(name)
    return net.eval().to(dev)


def _resample(wav: np.ndarray, sr: float) -> np.ndarray:
    if sr == WAV2VEC2_SFREQ:
        return wav
    from fractions import Fraction

    from scipy.signal import resample_poly

    frac = Fraction(WAV2VEC2_SFREQ / sr).limit_denominator(1000)
    return resample_poly(wav, frac.numerator, frac.denominator, axis=-1)


def speech_latents(
    wav,
    sr: float,
    model: str = "facebook/wav2vec2-base",
    *,
    layer: int = -1,
    batch_size: int = 16,
    device: str = "auto",
) -> np.ndarray:
    """Time-averaged wav2vec 2.0 hidden states of audio windows.

    Each window is resampled to 16 kHz, normalised to zero mean and unit variance (as
    ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does), passed through the model, and the
    hidden states of ``layer`` are averaged over the window's frames.

    Parameters
    ----------
    wav : ndarray of shape (n_samples,) or (n_windows, n_samples)
        Mono audio; one window or a batch of equally long windows.
    sr : float
        Sampling rate of ``wav`` in Hz.
    model : str
        Hugging Face id, local folder, or ``"tiny"`` / ``"tiny:<seed>"``.
    layer : int
        Index into the model's ``hidden_states`` (0 = after the feature projection,
        -1 = last transformer layer).
    batch_size : int
        Windows per forward pass.
    device : 'auto' | 'cpu' | 'cuda' | 'cuda:N'
        Where the model runs.

    Returns
    -------
    latents : ndarray of shape (n_windows, hidden_size), float32
        One row per window (a single window gives one row).
    """
    import torch

    wav = check_array("wav", wav)
    if wav.ndim not in (1, 2) or wav.shape[-1] == 0:
        raise BadInputError(
            f"wav must be audio of shape (n_samples,) or (n_windows, n_samples), got {wav.shape}."
        )
    if isinstance(sr, bool) or not isinstance(sr, int | float) or not sr > 0:
        raise BadInputError(f"sr must be a sampling rate > 0 in Hz, got {sr!r}.")
    check_type("layer", layer, int)
    batch_size = check_positive_int("batch_size", batch_size)
    windows = _resample(np.atleast_2d(wav).astype(np.float64), float(sr))
    if windows.shape[1] < 400:
        raise BadInputError(
            f"wav windows are {windows.shape[1]} samples long at 16 kHz; wav2vec 2.0 needs at "
            "least 400 (25 ms)."
        )
    windows = (windows - windows.mean(1, keepdims=True)) / np.sqrt(
        windows.var(1, keepdims=True) + 1e-7
    )
    net = load_wav2vec2(model, device=device)
    n_states = net.config.num_hidden_layers + 1
    if not -n_states <= layer < n_states:
        raise BadInputError(
            f"layer must index the model's {n_states} hidden states (-{n_states} ... "
            f"{n_states - 1}), got {layer}."
        )
    dev = next(net.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            xb = torch.as_tensor(windows[start : start + batch_size], dtype=torch.float32)
            states = net(xb.to(dev), output_hidden_states=True).hidden_states[layer]
            out.append(states.mean(dim=1).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def segment_targets(
    wav,
    sr: float,
    onsets,
    *,
    duration: float,
    model: str = "facebook/wav2vec2-base",
    layer: int = -1,
    batch_size: int = 16,
    device: str = "auto",
) -> np.ndarray:
    """Speech latents of the windows ``[onset, onset + duration)`` of one sound.

    Parameters
    ----------
    wav : ndarray of shape (n_samples,)
        The whole sound (e.g. one MEG-MASC story).
    sr : float
        Its sampling rate (Hz).
    onsets : array-like of float, shape (n_segments,)
        Window starts in seconds from the start of the sound (e.g. ``sound_onset`` of
        ``info['word_events']``). A window that runs past the end is zero-padded.
    duration : float
        Window length in seconds.
    model, layer, batch_size, device
        As in :func:`speech_latents`.

    Returns
    -------
    latents : ndarray of shape (n_segments, hidden_size), float32
    """
    wav = check_array("wav", wav, ndim=1)
    onsets = check_array("onsets", onsets, ndim=1).astype(np.float64)
    if isinstance(sr, bool) or not isinstance(sr, int | float) or not sr > 0:
        raise BadInputError(f"sr must be a sampling rate > 0 in Hz, got {sr!r}.")
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not duration > 0:
        raise BadInputError(f"duration must be a window length > 0 in seconds, got {duration!r}.")
    if onsets.size == 0:
        raise BadInputError("onsets is empty; give at least one window start (seconds).")
    length_s = len(wav) / sr
    bad = (onsets < 0) | (onsets >= length_s)
    if bad.any():
        raise BadInputError(
            f"onsets must lie in [0, {length_s:.3f}) s (the sound's length); "
            f"{int(bad.sum())} do not, e.g. {onsets[bad][:3].tolist()}."
        )
    n = int(round(duration * sr))
    starts = np.round(onsets * sr).astype(np.int64)
    padded = np.concatenate([wav, np.zeros(n, dtype=wav.dtype)])
    windows = np.stack([padded[s : s + n] for s in starts])
    if (starts + n > len(wav)).any():
        logger.info(
            "segment_targets: %d window(s) run past the end of the sound and were zero-padded.",
            int((starts + n > len(wav)).sum()),
        )
    return speech_latents(windows, sr, model, layer=layer, batch_size=batch_size, device=device)
