"""One adaptation API (issue 8): the four methods, the report, the fine-tuning curve on simulated
subjects, `bds finetune` on a demo NSD, and bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from braindecode_suite.alignment import (
    RidgeAlignment,
    adapt,
    finetune_curve,
    finetune_report,
    write_training_info,
)
from braindecode_suite.alignment.finetune import (
    mean_target_correlation,
    small_decoder,
    two_way_score,
)
from braindecode_suite.datasets import make_multisubject
from braindecode_suite.models.deep import TrainConfig, train_decoder
from braindecode_suite.utils import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILY_OF = {"adapter": "mindeye2", "reset_tuning": "mindbridge", "cluster_nn": "brainit"}


def _data(voxels=(30, 35, 40), seed=0):
    return make_multisubject(
        len(voxels), n_shared=40, n_unique=60, latent_dim=4, target_dim=6, voxels=voxels,
        noise=0.3, seed=seed,
    )  # fmt: skip


def _split(ms, s, which):
    tr = ms.trials[s]
    keep = tr.split == which
    return tr.X[keep], ms.targets[tr.stimulus_ids[keep]]


def _pretrained(family, ms, subjects=(1, 2), steps=20):
    nv = {s: ms.trials[s].X.shape[1] for s in subjects}
    model = small_decoder(family, nv, ms.targets.shape[1])
    pre = {s: _split(ms, s, "train") for s in subjects}
    return train_decoder(model, pre, config=TrainConfig(steps=steps, batch_size=16, lr=3e-3)).model


# ---------------------------------------------------------------------- scores
def test_scores_match_references():
    from braindecode_suite.evaluation import two_way_identification

    rng = np.random.default_rng(0)
    y = rng.standard_normal((12, 5))
    p = y + rng.standard_normal((12, 5))
    ref = np.mean([pearsonr(y[:, j], p[:, j])[0] for j in range(5)])
    assert mean_target_correlation(y, p) == pytest.approx(ref, abs=1e-12)
    assert two_way_score(y, p) == pytest.approx(np.mean(two_way_identification(y, p)), abs=1e-12)
    # by hand on 3 items: R = corr(true i, pred j)
    t = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    q = np.array([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])  # items 2 and 3 swapped
    # one-hot rows: r = 1 for equal rows, -0.5 otherwise. Pred 0 beats both others (1);
    # preds 1 and 2 tie with item 0 (ties fail) and lose to the swapped item (0)
    assert two_way_score(t, q) == pytest.approx((1 + 0 + 0) / 3)


# ---------------------------------------------------------------------- the one API
@pytest.mark.parametrize("method", ["adapter", "reset_tuning", "cluster_nn"])
def test_adapt_deep_methods(method):
    ms = _data()
    model = _pretrained(FAMILY_OF[method], ms)
    X, Y = _split(ms, 3, "train")
    Xt, _ = _split(ms, 3, "test")
    cfg = TrainConfig(steps=4, batch_size=8, lr=3e-3)
    ad = adapt(model, X, Y, method=method, subject=3, train_config=cfg)
    assert ad.method == method and ad.subject == 3
    assert 3 in ad.model.subjects and 3 not in model.subjects  # the pretrained one is untouched
    assert ad.model.n_voxels[3] == 40 and len(ad.history) == 4
    pred = ad.predict(Xt)
    assert pred.reshape(len(Xt), -1).shape == (40, 6)
    np.testing.assert_allclose(pred, ad.model.predict(Xt, 3, device="cpu"))
    # 'auto' picks the family's own method
    assert adapt(model, X, Y, train_config=cfg).method == method


def test_adapt_functional_is_alignment_then_reference_decoder(tmp_path):
    ms = _data()
    model = _pretrained("mindeye2", ms)
    shared = ms.shared_ids[:30]
    Xn, Xr = ms.responses(3, shared), ms.responses(1, shared)
    Xt = ms.responses(3, ms.shared_ids[30:])
    ad = adapt(model, method="functional", X_new_shared=Xn, X_ref_shared=Xr, alignment="ridge")
    assert ad.method == "functional" and ad.subject == 1  # the only 30-voxel subject
    # independent path: the alignment class, then the pretrained model as subject 1
    mapped = RidgeAlignment().fit(Xn, Xr).transform(Xt)
    np.testing.assert_allclose(ad.predict(Xt), model.predict(mapped, 1, device="cpu"), atol=1e-5)
    out = ad.save_pretrained(tmp_path / "fa")
    meta = json.loads((out / "adaptation.json").read_text())
    assert meta == {"method": "functional", "subject": 1, "alignment": "ridge"}
    assert (out / "alignment.safetensors").is_file() and (out / "config.json").is_file()


def test_report_rows_and_no_adaptation():
    # equal voxel counts: 'no adaptation' = mean of the pretrained subjects' adapters
    ms = _data(voxels=(30, 30, 30))
    model = _pretrained("mindeye2", ms)
    X, Y = _split(ms, 3, "train")
    Xt, Yt = _split(ms, 3, "test")
    cfg = TrainConfig(steps=4, batch_size=8, lr=3e-3)
    rep = finetune_report(model, X, Y, Xt, Yt, train_config=cfg)
    d = rep.to_dict()
    assert d["method"] == "adapter" and d["n_train"] == 60 and d["n_test"] == 40
    for row in ("adapted", "scratch", "no_adaptation"):
        assert 0 <= d[row]["two_way"] <= 1 and -1 <= d[row]["mean_corr"] <= 1, row
    assert "mean" in d["no_adaptation"]["how"]
    # by hand: a copy whose new adapter is the mean of adapters 1 and 2
    w = (model.adapters["s1"].weight + model.adapters["s2"].weight) / 2
    b = (model.adapters["s1"].bias + model.adapters["s2"].bias) / 2
    with torch.no_grad():
        h = model.norm(model.backbone(torch.as_tensor(Xt, dtype=torch.float32) @ w.T + b))
        ref = model.clip_head(h).numpy()
    assert d["no_adaptation"]["mean_corr"] == pytest.approx(
        mean_target_correlation(Yt, ref), abs=1e-5
    )
    # different voxel counts, no shared responses: not applicable, with the reason
    ms = _data()
    model = _pretrained("mindeye2", ms, steps=5)
    X, Y = _split(ms, 3, "train")
    Xt, Yt = _split(ms, 3, "test")
    rep = finetune_report(model, X, Y, Xt, Yt, train_config=cfg)
    assert "voxel counts" in rep.scores["no_adaptation"]["not_applicable"]
    # ... with shared responses: functional alignment, no fine-tuning
    sh = ms.shared_ids[:20]
    rep = finetune_report(
        model, X, Y, Xt, Yt, train_config=cfg, X_new_shared=ms.responses(3, sh),
        X_ref_shared=ms.responses(2, sh), reference_subject=2,
    )  # fmt: skip
    assert "functional alignment" in rep.scores["no_adaptation"]["how"]


# ---------------------------------------------------------------------- the curve
CURVE_DATA = dict(
    n_shared=100, n_unique=800, latent_dim=4, target_dim=12, voxels=(60, 70, 80, 90), noise=0.3
)


@pytest.mark.parametrize("seed", [0, 1])
def test_curve_adapted_beats_scratch_and_gap_shrinks(seed):
    """The demo's setting; over seeds 0, 1, 2 (docs/finetune.md) the mean-correlation gap at
    20 trials was 0.086 / 0.102 / 0.121 and at 800 trials 0.054 / -0.023 / 0.055."""
    ms = make_multisubject(4, seed=seed, **CURVE_DATA)
    curve = finetune_curve(
        ms, fractions=(0.025, 1.0), family="mindeye2", seed=seed,
        pretrain_config=TrainConfig(steps=400, batch_size=32, lr=3e-3, warmup_steps=10),
        finetune_config=TrainConfig(steps=400, batch_size=32, lr=3e-3, warmup_steps=5),
    )  # fmt: skip
    assert curve["n_train"] == [20, 800] and curve["n_test"] == 100
    assert curve["settings"]["method"] == "adapter" and curve["settings"]["new_subject"] == 4
    gap = curve["gap"]["mean_corr"]
    assert gap[0] > 0.05, gap
    assert gap[-1] < gap[0] - 0.02, gap
    a, s = curve["adapted"][0], curve["scratch"][0]
    assert gap[0] == pytest.approx(a["mean_corr"] - s["mean_corr"])
    assert "not_applicable" in curve["no_adaptation"]  # voxel counts differ


def test_curve_is_deterministic_for_a_seed():
    ms = _data()
    kw = dict(
        fractions=(0.5,), family="mindbridge", seed=3,
        pretrain_config=TrainConfig(steps=6, batch_size=8), finetune_config=TrainConfig(steps=3),
    )  # fmt: skip
    a, b = finetune_curve(ms, **kw), finetune_curve(ms, **kw)
    assert a == b and a["n_train"] == [30]


# ---------------------------------------------------------------------- bad input
def test_bad_input(tmp_path):
    ms = _data()
    model = _pretrained("mindeye2", ms, steps=2)
    X, Y = _split(ms, 3, "train")
    with pytest.raises(BadInputError, match=r"model_or_dir: '.*nowhere' is not a folder"):
        adapt(tmp_path / "nowhere", X, Y)
    with pytest.raises(BadInputError, match=r"method.*'fine_tune'"):
        adapt(model, X, Y, method="fine_tune")
    with pytest.raises(BadInputError, match=r"applies to BrainITDecoder, got a MindEye2Decoder"):
        adapt(model, X, Y, method="cluster_nn")
    with pytest.raises(BadInputError, match="give X_new and Y_new"):
        adapt(model, method="adapter")
    sh = ms.shared_ids[:20]
    with pytest.raises(
        BadInputError, match=r"X_ref_shared has 40 voxels but reference subject 1 has 30"
    ):
        adapt(
            model, method="functional", X_new_shared=ms.responses(3, sh),
            X_ref_shared=ms.responses(3, sh), reference_subject=1,
        )  # fmt: skip
    with pytest.raises(BadInputError, match="give X_new_shared and X_ref_shared"):
        adapt(model, method="functional")
    with pytest.raises(BadInputError, match=r"X_test has 30 voxels but X_train has 40"):
        finetune_report(model, X, Y, _split(ms, 1, "test")[0], Y[:40])
    with pytest.raises(BadInputError, match=r"fractions must be numbers in \(0, 1\]"):
        finetune_curve(ms, fractions=(0.0, 0.5))
    with pytest.raises(BadInputError, match=r"new_subject.*7"):
        finetune_curve(ms, new_subject=7)


# ---------------------------------------------------------------------- CLI
def _bds(monkeypatch, capsys, *args):
    from braindecode_suite.cli import main

    monkeypatch.setattr(sys, "argv", ["bds", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        main()
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


@pytest.fixture(scope="module")
def demo_nsd(tmp_path_factory):
    from braindecode_suite.datasets import make_demo_nsd

    root = tmp_path_factory.mktemp("nsd")
    make_demo_nsd(
        root, n_train=40, n_test=6, n_test_repeats=2, n_sessions=2, image_size=32,
        n_voxels_prf=60, n_voxels_category=20, random_state=0,
    )  # fmt: skip
    return root


def _model_dir(tmp_path, target_dim=48, info=True):
    """A tiny MindEye2 'pretrained' on random data for subjects 2 and 3 (pixels 4x4x3 = 48)."""
    rng = np.random.default_rng(0)
    model = small_decoder("mindeye2", {2: 25, 3: 30}, target_dim, hidden_dim=16)
    data = {s: (rng.standard_normal((20, n)), rng.standard_normal((20, target_dim))) for s, n in ((2, 25), (3, 30))}  # fmt: skip
    model = train_decoder(model, data, config=TrainConfig(steps=3, batch_size=8)).model
    folder = model.save_pretrained(tmp_path / "pre")
    if info:
        write_training_info(folder, target_extractor={"kind": "pixels", "params": {"size": 4}})
    return folder


def test_cli_finetune(tmp_path, demo_nsd, monkeypatch, capsys):
    from braindecode_suite.datasets import load_nsd

    pre = _model_dir(tmp_path)
    out = tmp_path / "ft"
    code, stdout, err = _bds(
        monkeypatch, capsys, "finetune", "--from", pre, "--data-dir", demo_nsd, "--subject", 1,
        "--sessions", 1, "--sessions", 2, "--steps", 3, "--batch-size", 8, "--device", "cpu",
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    m = json.loads((out / "finetune_metrics.json").read_text())
    trials = load_nsd(demo_nsd, 1, sessions=[1, 2])
    assert m["n_train"] == int((trials.split == "train").sum()) == 40
    assert m["n_test"] == 6  # repeats averaged
    assert m["method"] == "adapter" and m["sessions"] == [1, 2]
    assert m["target_extractor"] == {"kind": "pixels", "params": {"size": 4}, "field": "pixels"}
    for row in ("adapted", "scratch"):
        assert 0 <= m[row]["two_way"] <= 1
    assert "not_applicable" in m["no_adaptation"]  # 80 voxels vs adapters of 25 and 30
    refs = {(p["model"], p["CLIP two-way (%)"]) for p in m["published"]}
    assert refs == {("MindEye2", 79.2), ("MindEye2", 93.0), ("Brain-IT", 93.0)}
    assert all(p["source"] for p in m["published"])
    from braindecode_suite.models.deep import load_decoder

    model = load_decoder(out / "model")
    assert model.subjects == [2, 3, 1]
    assert json.loads((out / "model" / "training.json").read_text())["subject"] == 1
    html = (out / "report.html").read_text()
    assert "79.2" in html and "not applicable" in html


def test_cli_finetune_bad_input(tmp_path, demo_nsd, monkeypatch, capsys):
    base = ["finetune", "--data-dir", demo_nsd, "--subject", 1, "--sessions", 1, "--steps", 2]
    code, _, err = _bds(monkeypatch, capsys, *base, "--from", tmp_path / "missing")
    assert code == 2 and "--from" in err and "does not exist" in err
    pre = _model_dir(tmp_path, info=False)
    code, _, err = _bds(monkeypatch, capsys, *base, "--from", pre)
    assert code == 2 and "no training.json" in err and "--target-extractor" in err
    code, _, err = _bds(monkeypatch, capsys, *base, "--from", pre, "--method", "bogus")
    assert code == 2 and "--method" in err and "bogus" in err
    spec = '{"kind": "pixels", "params": {"size": 5}}'  # 75 values, the model has 48
    code, _, err = _bds(monkeypatch, capsys, *base, "--from", pre, "--target-extractor", spec)
    assert code == 2 and "gives 75 values per image" in err and "has 48" in err
    code, _, err = _bds(monkeypatch, capsys, *base, "--from", pre, "--subject", 2)
    assert code == 2 and "already a subject" in err
