"""wav2vec 2.0 speech latents (tiny random model, offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from braindecode_suite.features.speech import load_wav2vec2, segment_targets, speech_latents
from braindecode_suite.utils.validation import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _audio(n, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    return np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(n)


def test_tiny_latents_match_transformers_by_hand():
    from transformers import Wav2Vec2FeatureExtractor

    wav = np.stack([_audio(8000, 8000, s) for s in range(3)])  # 8 kHz, 1 s each
    out = speech_latents(wav, 8000, "tiny", layer=1, device="cpu")
    assert out.shape == (3, 32) and out.dtype == np.float32
    # reference: scipy resampling, transformers' own normalisation, mean of hidden states
    up = resample_poly(wav, 2, 1, axis=-1)
    fe = Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000)
    inputs = fe(list(up), sampling_rate=16000, return_tensors="pt")
    net = load_wav2vec2("tiny", device="cpu")
    with torch.no_grad():
        ref = net(inputs["input_values"], output_hidden_states=True).hidden_states[1]
    np.testing.assert_allclose(out, ref.mean(1).numpy(), rtol=1e-3, atol=1e-4)
    last = speech_latents(wav[0], 8000, "tiny", device="cpu")
    assert last.shape == (1, 32) and not np.allclose(last[0], out[0])


def test_segment_targets_cut_the_windows_and_pad():
    sr = 16000
    wav = _audio(2 * sr)
    onsets = np.array([0.0, 0.5, 1.8])
    out = segment_targets(wav, sr, onsets, duration=0.4, model="tiny", device="cpu")
    n = int(0.4 * sr)
    manual = np.stack(
        [wav[0:n], wav[8000 : 8000 + n], np.r_[wav[28800:], np.zeros(n - (2 * sr - 28800))]]
    )
    np.testing.assert_allclose(out, speech_latents(manual, sr, "tiny", device="cpu"), atol=1e-5)


def test_bad_inputs():
    with pytest.raises(BadInputError, match="sr must be a sampling rate > 0 in Hz, got 0"):
        speech_latents(np.zeros(16000), 0, "tiny")
    with pytest.raises(BadInputError, match="at least 400"):
        speech_latents(np.ones(100), 16000, "tiny")
    with pytest.raises(BadInputError, match=r"layer must index the model's 3 hidden states"):
        speech_latents(_audio(1600), 16000, "tiny", layer=5, device="cpu")
    with pytest.raises(BadInputError, match=r"onsets must lie in \[0, 1.000\)"):
        segment_targets(_audio(16000), 16000, [0.2, 1.5], duration=0.2, model="tiny")
    with pytest.raises(BadInputError, match="duration must be a window length > 0"):
        segment_targets(_audio(16000), 16000, [0.2], duration=0, model="tiny")
    with pytest.raises(BadInputError, match="Could not load the wav2vec 2.0 model .*tiny"):
        load_wav2vec2("bds-no-such-org/no-such-wav2vec2", device="cpu")
