"""Contrastive M/EEG encoders: subject layers, CLIP loss, training, save/load, identification
on synthetic recordings that carry a known signal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from braindecode_suite.datasets import make_synthetic_meeg
from braindecode_suite.evaluation.identification import (
    cross_subject_splits,
    segment_identification,
    zero_shot_identification,
)
from braindecode_suite.models.meeg import BrainEncoder, SubjectLayers, clip_loss
from braindecode_suite.models.meeg_training import fit_contrastive, validation_split
from braindecode_suite.utils.validation import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(feature_dim=32, backbone_kwargs={"hidden_dim": 16, "depth": 2})


def _has_braindecode() -> bool:
    try:
        import braindecode  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def synthetic():
    trials, emb = make_synthetic_meeg(
        n_subjects=3,
        n_concepts_train=80,
        n_concepts_test=20,
        n_reps=4,
        n_channels=12,
        n_times=48,
        sfreq=100.0,
        target_dim=12,
        snr=0.5,
        seed=0,
        subject_mixing=0.4,
    )
    return trials, emb


def _train_part(tr):
    m = tr.split == "train"
    return tr.X[m], tr.stimulus_ids[m]


def _test_average(tr):
    test_ids = np.unique(tr.stimulus_ids[tr.split == "test"])
    X = np.stack([tr.X[tr.stimulus_ids == c].mean(0) for c in test_ids])
    return X, test_ids


def test_subject_layers_identity_init_and_unseen_subject():
    layer = SubjectLayers(5, 5, n_subjects=3)
    x = torch.randn(4, 5, 7)
    torch.testing.assert_close(layer(x, torch.tensor([0, 1, 2, -1])), x)
    with torch.no_grad():
        layer.weights.normal_()
    W = layer.weights.detach()
    out = layer(x, torch.tensor([2, 0, -1, 1]))
    for b, s in enumerate([2, 0, None, 1]):
        w = W.mean(0) if s is None else W[s]
        torch.testing.assert_close(out[b], w.T @ x[b])
    rect = SubjectLayers(3, 5, n_subjects=1)
    torch.testing.assert_close(rect.weights[0], torch.eye(3, 5))


def test_clip_loss_by_hand():
    rng = np.random.default_rng(0)
    b, t = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    scale = np.log(10.0)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    L = 10.0 * bn @ tn.T
    ref = -0.5 * (np.diag(log_softmax(L, 1)).mean() + np.diag(log_softmax(L.T, 1)).mean())
    got = clip_loss(torch.tensor(b), torch.tensor(t), torch.tensor(scale))
    assert float(got) == pytest.approx(ref, rel=1e-6)
    # repeats of one stimulus: rows 0 and 1 share label 7, each gets half of the target mass
    labels = np.array([7, 7, 1, 2, 3, 4])
    P = (labels[:, None] == labels[None]).astype(float)
    P /= P.sum(1, keepdims=True)
    ref_l = -0.5 * ((P * log_softmax(L, 1)).sum(1).mean() + (P * log_softmax(L.T, 1)).sum(1).mean())
    got_l = clip_loss(torch.tensor(b), torch.tensor(t), scale, labels=torch.tensor(labels))
    assert float(got_l) == pytest.approx(ref_l, rel=1e-6)
    got_mse = clip_loss(torch.tensor(b), torch.tensor(t), scale, mse_weight=0.5)
    assert float(got_mse) == pytest.approx(ref + 0.5 * ((b - t) ** 2).mean(), rel=1e-6)
    with pytest.raises(BadInputError, match=r"one shape, got \(6, 4\) and \(5, 4\)"):
        clip_loss(torch.tensor(b), torch.tensor(t[:5]), scale)


@pytest.mark.parametrize(
    "backbone, kwargs",
    [
        ("simple_conv", {"hidden_dim": 8, "depth": 2}),
        ("atm", {"d_model": 16, "n_filters": 8}),
        ("eegnet", {}),
        ("shallow_fbcsp", {"n_filters_time": 8, "n_filters_spat": 8}),
        ("eeg_conformer", {"n_filters_time": 8, "num_layers": 1, "num_heads": 2}),
    ],
)
def test_backbones_forward(backbone, kwargs):
    if backbone not in ("simple_conv", "atm"):
        pytest.importorskip("braindecode")
    enc = BrainEncoder(
        6, 100, 10, n_subjects=2, backbone=backbone, feature_dim=16, backbone_kwargs=kwargs
    )
    out = enc.predict(
        np.random.default_rng(0).standard_normal((5, 6, 100)), [0, 1, -1, 0, 1], device="cpu"
    )
    assert out.shape == (5, 10) and np.isfinite(out).all()


def test_within_subject_zero_shot_well_above_chance(synthetic):
    trials, emb = synthetic
    tr = trials[0]
    X, stim = _train_part(tr)
    enc = BrainEncoder(12, 48, 12, **SMALL)
    fit_contrastive(
        enc, X, emb[stim], groups=stim, epochs=40, batch_size=64, lr=3e-3, device="cpu", patience=8
    )
    Xte, test_ids = _test_average(tr)
    res = zero_shot_identification(
        enc.predict(Xte, device="cpu"),
        emb[test_ids],
        np.arange(len(test_ids)),
        k=(1, 5),
        n_boot=200,
    )
    assert res["chance_top1"] == 1 / 20
    assert res["top1"] > 5 * res["chance_top1"]
    assert res["top5"] > 2 * res["chance_top5"]


def test_leave_one_subject_out_above_chance(synthetic):
    trials, emb = synthetic
    X = np.concatenate([t.X for t in trials])
    subj = np.concatenate([t.subject for t in trials])
    stim = np.concatenate([t.stimulus_ids for t in trials])
    split = np.concatenate([t.split for t in trials])
    held, train_idx, test_idx = cross_subject_splits(subj)[-1]
    train_idx = train_idx[split[train_idx] == "train"]  # training concepts only
    index = np.unique(subj[train_idx], return_inverse=True)[1]
    enc = BrainEncoder(12, 48, 12, n_subjects=2, **SMALL)
    fit_contrastive(
        enc,
        X[train_idx],
        emb[stim[train_idx]],
        index,
        groups=stim[train_idx],
        epochs=30,
        batch_size=64,
        lr=3e-3,
        device="cpu",
        patience=6,
    )
    Xte, test_ids = _test_average(trials[held - 1])
    res = zero_shot_identification(
        enc.predict(Xte, -1, device="cpu"),
        emb[test_ids],
        np.arange(len(test_ids)),
        k=(1, 5),
        n_boot=200,
    )
    assert res["top1"] > 2 * res["chance_top1"]


def test_speech_segments_top10_above_chance():
    from braindecode_suite.features.speech import speech_latents

    rng = np.random.default_rng(0)
    sr, n = 16000, 160
    t = np.arange(int(0.25 * sr)) / sr
    f0, am = rng.uniform(100, 2000, n), rng.uniform(2, 20, n)
    wav = np.sin(2 * np.pi * f0[:, None] * t) * (1 + np.sin(2 * np.pi * am[:, None] * t))
    wav += 0.2 * rng.standard_normal(wav.shape)
    lat = speech_latents(wav, sr, "tiny", device="cpu")
    Y = (lat - lat[:120].mean(0)) / (lat[:120].std(0) + 1e-6)  # train statistics only
    trials, _ = make_synthetic_meeg(1, 120, 40, 1, 16, 64, 100.0, 0, snr=1.0, seed=1, embeddings=Y)
    tr = trials[0]
    X, stim = _train_part(tr)
    enc = BrainEncoder(16, 64, Y.shape[1], **SMALL)
    fit_contrastive(
        enc, X, Y[stim], groups=stim, epochs=40, batch_size=32, lr=3e-3, device="cpu", patience=8
    )
    m = tr.split == "test"
    res = segment_identification(
        enc.predict(tr.X[m], device="cpu"),
        Y[tr.stimulus_ids[m]],
        k=(1, 10),
        n_boot=200,
        published="defossez_gwilliams_meg",
    )
    assert res["chance_top10"] == 10 / 40
    assert res["top10"] > 2 * res["chance_top10"]
    assert res["top1"] > 3 * res["chance_top1"]


def test_deterministic_and_best_weights_restored(synthetic):
    trials, emb = synthetic
    X, stim = _train_part(trials[1])
    X, stim = X[:160], stim[:160]
    before = torch.random.get_rng_state()
    kw = dict(
        groups=stim, epochs=6, batch_size=32, lr=3e-3, device="cpu", val_fraction=0.25, patience=2
    )
    a = fit_contrastive(BrainEncoder(12, 48, 12, **SMALL), X, emb[stim], seed=5, **kw)
    torch.testing.assert_close(torch.random.get_rng_state(), before)
    b = fit_contrastive(BrainEncoder(12, 48, 12, **SMALL), X, emb[stim], seed=5, **kw)
    c = fit_contrastive(BrainEncoder(12, 48, 12, **SMALL), X, emb[stim], seed=6, **kw)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k])
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    h = a.history_
    assert h["n_train"] + h["n_val"] == 160 and h["n_val"] == 40  # 10 of 40 stimuli, 4 reps
    assert h["val_loss"][h["best_epoch"]] == min(h["val_loss"])
    # the restored weights give the best validation loss again, on the same split
    tr_idx, va_idx = validation_split(160, 0.25, groups=stim, seed=5)
    assert not set(stim[tr_idx]) & set(stim[va_idx])
    with torch.no_grad():
        pred = a(torch.as_tensor(X[va_idx]))
        loss = clip_loss(
            pred,
            torch.as_tensor(emb[stim[va_idx]]),
            a.logit_scale,
            labels=torch.as_tensor(stim[va_idx]),
        )
    assert float(loss) == pytest.approx(min(h["val_loss"]), rel=1e-4)


def test_save_and_load_roundtrip(tmp_path, synthetic):
    trials, emb = synthetic
    X, stim = _train_part(trials[2])
    enc = BrainEncoder(
        12,
        48,
        12,
        n_subjects=2,
        backbone="atm",
        backbone_kwargs={"d_model": 16, "n_filters": 8},
        feature_dim=16,
    )
    fit_contrastive(
        enc, X[:64], emb[stim[:64]], np.arange(64) % 2, epochs=2, device="cpu", val_fraction=0
    )
    folder = enc.save_pretrained(tmp_path / "enc")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
    blob = json.loads((folder / "config.json").read_text())
    assert blob["class"] == "BrainEncoder" and blob["config"]["backbone"] == "atm"
    assert blob["history"]["epochs_run"] == 2
    back = BrainEncoder.from_pretrained(folder)
    np.testing.assert_allclose(
        back.predict(X[:5], [0, 1, 0, 1, -1], device="cpu"),
        enc.predict(X[:5], [0, 1, 0, 1, -1], device="cpu"),
        atol=1e-6,
    )
    torch.testing.assert_close(back.input_scale, enc.input_scale)
    with pytest.raises(BadInputError, match="lacks config.json or model.safetensors"):
        BrainEncoder.from_pretrained(tmp_path)


def test_bad_inputs():
    with pytest.raises(BadInputError, match="'backbone' parameter.*'simple_conv'.*'eegnett'"):
        BrainEncoder(4, 50, 8, backbone="eegnett")
    if _has_braindecode():
        with pytest.raises(BadInputError, match="EEGNet could not be built .*no_such_arg"):
            BrainEncoder(4, 50, 8, backbone="eegnet", backbone_kwargs={"no_such_arg": 1})
    with pytest.raises(BadInputError, match="n_times must be >= 1, got 0"):
        BrainEncoder(4, 0, 8)
    enc = BrainEncoder(4, 50, 8, n_subjects=2, **SMALL)
    X = np.zeros((10, 4, 50), dtype=np.float32)
    with pytest.raises(
        BadInputError, match=r"X must be of shape \(n_epochs, 4, 50\).*\(10, 5, 50\)"
    ):
        enc.predict(np.zeros((10, 5, 50)))
    with pytest.raises(BadInputError, match=r"subjects must lie in \[0, 2\).*\[2\]"):
        enc.predict(X, 2)
    with pytest.raises(BadInputError, match=r"Y must be of shape \(10, 8\).*\(10, 7\)"):
        fit_contrastive(enc, X, np.zeros((10, 7)), np.zeros(10, int))
    with pytest.raises(BadInputError, match="subjects used for training must be >= 0"):
        fit_contrastive(enc, X, np.zeros((10, 8)), np.full(10, -1))
    with pytest.raises(BadInputError, match="val_fraction=0.5 of 3 groups leaves 2"):
        fit_contrastive(
            enc, X, np.zeros((10, 8)), np.zeros(10, int), groups=np.arange(10) % 3, val_fraction=0.5
        )
    with pytest.raises(BadInputError, match="val_fraction must lie in \\[0, 1\\), got 1.5"):
        validation_split(10, 1.5)
