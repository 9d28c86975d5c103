"""Deep decoders: shapes, losses against hand computations, save/load, resume, gradient
accumulation, new-subject adaptation on simulated multi-subject data, input checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from braindecode_suite.models.deep import (
    BrainITConfig,
    BrainITDecoder,
    DeepDecoder,
    DeepDecoderConfig,
    DiffusionPrior,
    MindBridgeConfig,
    MindBridgeDecoder,
    MindEye2Config,
    MindEye2Decoder,
    TrainConfig,
    adapt_new_subject,
    info_nce,
    latest_checkpoint,
    load_decoder,
    mixco,
    mixco_nce,
    soft_clip_loss,
    train_decoder,
    train_from_scratch,
)
from braindecode_suite.utils import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NV = {1: 30, 2: 24, 3: 27}


def tiny(family: str, n_voxels=None, **kw):
    n_voxels = dict(NV if n_voxels is None else n_voxels)
    torch.manual_seed(kw.pop("init_seed", 0))
    if family == "mindeye2":
        cfg = dict(
            hidden_dim=16,
            n_blocks=2,
            n_tokens=2,
            clip_dim=6,
            lowlevel_shape=(2, 3),
            dropout=0.1,
            mixco_fraction=0.5,
            temperature=0.2,
        )
        cfg.update(kw)
        return MindEye2Decoder(MindEye2Config(n_voxels=n_voxels, **cfg))
    if family == "brainit":
        cfg = dict(
            emb_dim=4,
            n_clusters=6,
            d_model=8,
            n_heads=2,
            n_layers=1,
            n_query_layers=1,
            n_patches=2,
            feat_dim=6,
            dropout=0.1,
            kmeans_n_init=1,
        )
        cfg.update(kw)
        return BrainITDecoder(BrainITConfig(n_voxels=n_voxels, **cfg))
    cfg = dict(
        pool_size=20,
        hidden_dim=16,
        n_blocks=1,
        n_tokens=2,
        clip_dim=6,
        dropout=0.1,
        temperature=0.2,
    )
    cfg.update(kw)
    return MindBridgeDecoder(MindBridgeConfig(n_voxels=n_voxels, **cfg))


FAMILIES = ["mindeye2", "brainit", "mindbridge"]


def toy_data(model, n=40, seed=0):
    """Voxels = a subject mixing of a shared latent; targets = a map of the same latent."""
    rng = np.random.default_rng(seed)
    shapes = model.target_shapes()
    A = {k: rng.standard_normal((5, int(np.prod(s)))) for k, s in shapes.items()}
    out = {}
    for s, nv in model.n_voxels.items():
        z = rng.standard_normal((n, 5))
        X = np.tanh(z @ rng.standard_normal((5, nv))) + 0.1 * rng.standard_normal((n, nv))
        Y = {k: (z @ A[k]).reshape(n, *shapes[k]).astype(np.float32) for k in shapes}
        out[s] = (X.astype(np.float32), Y)
    return out


# ---------------------------------------------------------------------- shapes
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_shapes(family):
    model = tiny(family)
    x = torch.randn(5, NV[2])
    out = model({"subject": 2, "voxels": x})
    if family == "brainit":
        assert out["patches"].shape == (5, 2, 6)
        assert out["tokens"].shape == (5, 6, 8)
    else:
        assert out["clip"].shape == (5, 2, 6)
        assert out["clip_proj"].shape == (5, 2, 6)
    if family == "mindeye2":
        assert out["lowlevel"].shape == (5, 2, 3)
        assert out["latent"].shape == (5, 16)
    if family == "mindbridge":
        assert out["pooled"].shape == out["reconstruction"].shape == (5, 20)
        # adaptive average pooling = mean over torch's adaptive windows, by hand
        lo = [math.floor(i * NV[2] / 20) for i in range(20)]
        hi = [math.ceil((i + 1) * NV[2] / 20) for i in range(20)]
        ref = torch.stack([x[:, a:b].mean(1) for a, b in zip(lo, hi, strict=True)], 1)
        torch.testing.assert_close(out["pooled"], ref)


def test_mindeye2_without_lowlevel_head():
    model = tiny("mindeye2", lowlevel_shape=())
    out = model({"subject": 1, "voxels": torch.randn(3, NV[1])})
    assert "lowlevel" not in out and set(model.target_shapes()) == {"clip"}


# ---------------------------------------------------------------------- losses by hand
E_P = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 1.0]])
E_T = np.array([[0.8, 0.6], [0.0, 1.0], [-0.5, 0.2]])


def _hand_logsoftmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def _hand_norm(E):
    return [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in E]


def _soft_ce(Q, S):
    """Mean over rows of -sum_j Q_ij log softmax(S_i)_j, by hand."""
    rows = [
        -sum(q * lp for q, lp in zip(Q[i], _hand_logsoftmax(S[i]), strict=True))
        for i in range(len(S))
    ]
    return sum(rows) / len(rows)


def _sim(A, B, tau):
    return [[sum(a * b for a, b in zip(ra, rb, strict=True)) / tau for rb in B] for ra in A]


def test_info_nce_by_hand():
    tau = 0.5
    P, T = _hand_norm(E_P), _hand_norm(E_T)
    S = _sim(P, T, tau)
    St = [list(c) for c in zip(*S, strict=True)]
    ce1 = -sum(_hand_logsoftmax(S[i])[i] for i in range(3)) / 3
    ce2 = -sum(_hand_logsoftmax(St[i])[i] for i in range(3)) / 3
    got = info_nce(torch.tensor(E_P), torch.tensor(E_T), temperature=tau)
    assert float(got) == pytest.approx(0.5 * (ce1 + ce2), rel=1e-6)


def test_soft_clip_by_hand():
    tau = 0.5
    P, T = _hand_norm(E_P), _hand_norm(E_T)
    S_bt, S_tt = _sim(P, T, tau), _sim(T, T, tau)
    soft = [[math.exp(v) for v in _hand_logsoftmax(r)] for r in S_tt]
    S_tb = [list(c) for c in zip(*S_bt, strict=True)]
    l1 = _soft_ce(soft, S_bt)
    l2 = _soft_ce(soft, S_tb)
    got = soft_clip_loss(torch.tensor(E_P), torch.tensor(E_T), temperature=tau)
    assert float(got) == pytest.approx(0.5 * (l1 + l2), rel=1e-6)


def test_mixco_shapes_and_mixing():
    x = torch.randn(8, 2, 5)
    g = torch.Generator().manual_seed(3)
    mixed, perm, betas, select = mixco(x, s_thresh=0.5, generator=g)
    assert mixed.shape == x.shape and perm.shape == betas.shape == select.shape == (8,)
    assert sorted(perm.tolist()) == list(range(8))
    for i in range(8):
        if select[i]:
            b = float(betas[i])
            assert 0 <= b <= 1
            torch.testing.assert_close(mixed[i], b * x[i] + (1 - b) * x[perm[i]])
        else:
            assert float(betas[i]) == 1.0 and torch.equal(mixed[i], x[i])
    # same generator seed, same mix
    again = mixco(x, s_thresh=0.5, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(mixed, again)


def test_mixco_nce_by_hand():
    tau = 0.5
    P, T = _hand_norm(E_P), _hand_norm(E_T)
    S = _sim(P, T, tau)
    perm = [2, 0, 1]
    betas = [0.7, 1.0, 0.4]
    select = [True, False, True]
    Q = [[0.0] * 3 for _ in range(3)]
    for i in range(3):
        if select[i]:
            Q[i][i] += betas[i]
            Q[i][perm[i]] += 1 - betas[i]
        else:
            Q[i][i] = 1.0
    St = [list(c) for c in zip(*S, strict=True)]
    Qt = [list(c) for c in zip(*Q, strict=True)]
    l1 = _soft_ce(Q, S)
    l2 = _soft_ce(Qt, St)
    got = mixco_nce(
        torch.tensor(E_P),
        torch.tensor(E_T),
        torch.tensor(perm),
        torch.tensor(betas),
        torch.tensor(select),
        temperature=tau,
    )
    assert float(got) == pytest.approx(0.5 * (l1 + l2), rel=1e-6)
    one_way = mixco_nce(
        torch.tensor(E_P),
        torch.tensor(E_T),
        torch.tensor(perm),
        torch.tensor(betas),
        torch.tensor(select),
        temperature=tau,
        bidirectional=False,
    )
    assert float(one_way) == pytest.approx(l1, rel=1e-6)


# ---------------------------------------------------------------------- training
def _full_loss(model, data):
    model.eval()
    with torch.no_grad():
        tot = 0.0
        for s, (X, Y) in data.items():
            Yt = {k: torch.as_tensor(v) for k, v in model.prepare_targets(Y).items()}
            tot += float(model({"subject": s, "voxels": torch.as_tensor(X)}, Yt, {}, 1.0)["loss"])
    return tot / len(data)


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_decreases(family):
    model = tiny(family)
    data = toy_data(model)
    if family == "brainit":
        model.setup_training(data)  # the loss before training, with the clusters in place
    before = _full_loss(model, data)
    steps = 150 if family == "brainit" else 60
    res = train_decoder(
        model, data, config=TrainConfig(steps=steps, batch_size=16, lr=3e-3, schedule="constant")
    )
    after = _full_loss(res.model, data)
    assert res.step == steps and len(res.history) == steps
    assert after < 0.8 * before, (before, after)


def test_diffusion_prior_shapes_and_loss_decreases():
    torch.manual_seed(0)
    prior = DiffusionPrior(4, 3, depth=1, heads=2, timesteps=20)
    x0 = torch.randn(32, 3, 4)
    cond = x0 + 0.1 * torch.randn(32, 3, 4)

    def mean_loss():
        with torch.no_grad():
            return float(
                sum(prior.loss(x0, cond, torch.Generator().manual_seed(i)) for i in range(10)) / 10
            )

    before = mean_loss()
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for i in range(150):
        opt.zero_grad()
        prior.loss(x0, cond, torch.Generator().manual_seed(100 + i)).backward()
        opt.step()
    after = mean_loss()
    assert after < 0.7 * before, (before, after)
    sample = prior.sample(cond[:5], generator=torch.Generator().manual_seed(0))
    assert sample.shape == (5, 3, 4) and torch.isfinite(sample).all()


def test_mindeye2_with_prior_trains_and_samples():
    model = tiny("mindeye2", prior=True, prior_depth=1, prior_heads=2, prior_timesteps=5)
    data = toy_data(model, n=20)
    res = train_decoder(model, data, config=TrainConfig(steps=3, batch_size=8))
    assert "prior" in res.history[-1]
    out = res.model.sample_prior(data[1][0][:4], 1, device="cpu")
    assert out.shape == (4, 2, 6)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_reload_predicts_identically(family, tmp_path):
    model = tiny(family)
    data = toy_data(model, n=20)
    model = train_decoder(model, data, config=TrainConfig(steps=4, batch_size=8)).model
    folder = model.save_pretrained(tmp_path / "dec")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    again = load_decoder(folder)
    assert type(again) is type(model) and again.config == model.config
    X = data[3][0]
    a = model.predict(X, 3, device="cpu", outputs=None)
    b = again.predict(X, 3, device="cpu")
    assert np.array_equal(a, b)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_resume_equals_uninterrupted(family, tmp_path):
    """10 steps straight vs killed after 7 (last checkpoint at 6) and resumed to 10."""
    kw = dict(steps=10, batch_size=8, lr=3e-3, checkpoint_every=3, warmup_steps=2, seed=5)
    model = tiny(family)
    data = toy_data(model, n=20)
    full = train_decoder(model, data, config=TrainConfig(out_dir=str(tmp_path / "a"), **kw))

    cfg = TrainConfig(out_dir=str(tmp_path / "b"), **kw)
    part = train_decoder(tiny(family), data, config=cfg, stop_after=7)
    assert part.step == 7
    assert latest_checkpoint(tmp_path / "b").name == "step_6"
    # a half-written checkpoint (no trainer_state.json) is never trusted
    (tmp_path / "b" / "checkpoints" / "step_9.tmp-partial").mkdir()
    (tmp_path / "b" / "checkpoints" / "step_9").mkdir()
    assert latest_checkpoint(tmp_path / "b").name == "step_6"
    # a fresh process would start from a different initialisation: the checkpoint restores it
    resumed = train_decoder(tiny(family, init_seed=123), data, config=cfg)
    assert resumed.resumed_from.endswith("step_6") and resumed.step == 10
    a, b = _params(full.model), _params(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    assert (tmp_path / "b" / "model" / "model.safetensors").is_file()
    kept = sorted(p.parent.name for p in (tmp_path / "b").glob("checkpoints/*/trainer_state.json"))
    assert kept == ["step_10", "step_9"]  # the newest two complete ones


@dataclasses.dataclass
class _LinConfig(DeepDecoderConfig):
    n_out: int = 3


class _LinearDecoder(DeepDecoder):
    """A linear model with an MSE loss: a mean over samples, so accumulation is exact."""

    config_class = _LinConfig
    primary_output = "y"

    def __init__(self, config):
        super().__init__(config)
        self.lin = torch.nn.ModuleDict(
            {f"s{s}": torch.nn.Linear(n, config.n_out) for s, n in config.n_voxels.items()}
        )

    def target_shapes(self):
        return {"y": (self.config.n_out,)}

    def decode(self, batch):
        s, x = self.check_batch(batch)
        return {"y": self.lin[f"s{s}"](x)}

    def compute_loss(self, outputs, targets, ctx, *, progress):
        loss = torch.mean((outputs["y"] - targets["y"]) ** 2)
        return loss, {}


def test_gradient_accumulation_matches_full_batch():
    rng = np.random.default_rng(0)
    data = {
        s: (rng.standard_normal((40, n)), rng.standard_normal((40, 3)))
        for s, n in {1: 7, 2: 5}.items()
    }

    def run(batch_size, grad_accum):
        torch.manual_seed(0)
        model = _LinearDecoder(_LinConfig(n_voxels={1: 7, 2: 5}))
        cfg = TrainConfig(
            steps=6, batch_size=batch_size, grad_accum=grad_accum, lr=1e-2, max_grad_norm=0.5
        )
        return _params(train_decoder(model, data, config=cfg).model)

    full, accum = run(12, 1), run(3, 4)
    for k in full:
        torch.testing.assert_close(full[k], accum[k], atol=1e-6, rtol=1e-5)
    other = run(6, 1)  # a different batch really changes the result
    assert not all(torch.allclose(full[k], other[k], atol=1e-6) for k in full)


def test_bf16_mixed_precision_runs_on_cpu():
    model = tiny("mindeye2")
    res = train_decoder(
        model,
        toy_data(model, n=16),
        config=TrainConfig(steps=2, batch_size=8, mixed_precision="bf16", device="cpu"),
    )
    assert all(np.isfinite(h["loss"]) for h in res.history)


# ---------------------------------------------------------------------- Brain-IT clusters
def test_brainit_clusters_are_shared_across_subjects():
    """Two subjects whose voxels read the same latent directions (in a different voxel order)
    get those matching voxels into the same functional clusters."""
    rng = np.random.default_rng(1)
    n_lat, n_vox = 4, 24
    groups = np.repeat(np.arange(4), 6)  # 4 functional groups of voxels, one per latent axis
    order = rng.permutation(n_vox)  # subject 2 sees the same voxels, reordered
    model = tiny(
        "brainit",
        n_voxels={1: n_vox, 2: n_vox},
        n_clusters=4,
        emb_dim=4,
        feat_dim=4,
        n_patches=1,
        kmeans_n_init=5,
    )
    data = {}
    for s in (1, 2):
        z = rng.standard_normal((200, n_lat))
        X = z[:, groups] + 0.2 * rng.standard_normal((200, n_vox))
        X = X if s == 1 else X[:, order]
        data[s] = (X, z[:, None, :])
    model.setup_training(data)
    a1 = model.assignment(1).numpy()
    a2 = model.assignment(2).numpy()
    # voxel v of subject 2 is voxel order[v] of subject 1: same cluster
    assert np.array_equal(a2, a1[order])
    # and the clusters are the functional groups (up to relabelling)
    assert len({(g, c) for g, c in zip(groups, a1, strict=True)}) == 4


# ---------------------------------------------------------------------- adaptation
def _multisubject():
    from braindecode_suite.datasets.synthetic import make_multisubject

    ms = make_multisubject(
        4,
        n_shared=60,
        n_unique=300,
        latent_dim=4,
        target_dim=12,
        voxels=(60, 70, 80, 90),
        noise=0.3,
        seed=0,
    )

    def split(s, which):
        tr = ms.trials[s]
        keep = tr.split == which
        return tr.X[keep], ms.targets[tr.stimulus_ids[keep]]

    return split


def _pearson(pred, y):
    pred, y = pred.reshape(len(pred), -1), y.reshape(len(y), -1)
    return float(np.mean([np.corrcoef(pred[:, j], y[:, j])[0, 1] for j in range(y.shape[1])]))


ADAPT_CASES = {
    "adapter": (
        "mindeye2",
        dict(
            hidden_dim=64,
            n_blocks=1,
            n_tokens=2,
            clip_dim=6,
            lowlevel_shape=(),
            mse_weight=1.0,
            mixco_fraction=0.2,
            dropout=0.0,
        ),
    ),
    "reset_tuning": (
        "mindbridge",
        dict(pool_size=48, hidden_dim=32, n_tokens=2, clip_dim=6, dropout=0.0),
    ),
    "cluster_nn": (
        "brainit",
        dict(emb_dim=6, n_clusters=12, d_model=16, n_patches=2, feat_dim=6, dropout=0.0),
    ),
}


@pytest.mark.parametrize("method", ["adapter", "reset_tuning", "cluster_nn"])
def test_adapted_beats_scratch_on_ten_percent(method):
    split = _multisubject()
    family, kw = ADAPT_CASES[method]
    model = tiny(family, n_voxels={1: 60, 2: 70, 3: 80}, **kw)
    pre = {s: split(s, "train") for s in (1, 2, 3)}
    model = train_decoder(
        model, pre, config=TrainConfig(steps=400, batch_size=32, lr=3e-3, warmup_steps=10)
    ).model
    X4, Y4 = split(4, "train")
    X4, Y4 = X4[:30], Y4[:30]  # 10% of its 300 training samples
    Xt, Yt = split(4, "test")
    tune = TrainConfig(steps=100, batch_size=16, lr=3e-3, warmup_steps=5)
    adapted = adapt_new_subject(model, X4, Y4, method=method, subject=4, train_config=tune)
    assert 4 in adapted.model.subjects and 4 not in model.subjects  # a copy was adapted
    scratch = train_from_scratch(model, X4, Y4, subject=4, train_config=tune)
    r_adapted = _pearson(adapted.model.predict(Xt, 4, device="cpu"), Yt)
    r_scratch = _pearson(scratch.model.predict(Xt, 4, device="cpu"), Yt)
    print(f"{method}: r adapted {r_adapted:.3f}, from scratch {r_scratch:.3f}")
    assert r_adapted > r_scratch + 0.05, (r_adapted, r_scratch)


def test_adapt_freeze_backbone_trains_only_the_new_subject():
    model = tiny("mindeye2", lowlevel_shape=())
    data = toy_data(model, n=16)
    before = _params(model)
    res = adapt_new_subject(
        model,
        data[1][0][:, :20],
        data[1][1]["clip"],
        freeze_backbone=True,
        train_config=TrainConfig(steps=3, batch_size=8),
    )
    new = res.model
    assert new.subjects == [1, 2, 3, 4]
    after = _params(new)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == set()  # every shared and old-subject weight is untouched
    assert all(p.requires_grad for p in new.parameters())  # flags restored


def test_reset_tuning_reinitialises_embedder():
    model = tiny("mindbridge")
    w = model.embedders["s1"][0].weight.detach().clone()
    model.reset_subject(1)
    assert not torch.equal(w, model.embedders["s1"][0].weight)


# ---------------------------------------------------------------------- bad input
def test_bad_inputs(tmp_path):
    model = tiny("mindeye2")
    with pytest.raises(BadInputError, match=r"Unknown subject 9.*subjects \[1, 2, 3\]"):
        model.predict(np.zeros((2, 30)), 9)
    with pytest.raises(BadInputError, match=r"X has 29 voxels but subject 1 has 30"):
        model.predict(np.zeros((2, 29)), 1)
    with pytest.raises(
        BadInputError,
        match=r"voxels of subject 2 must be a tensor of shape "
        r"\(batch, 24\), got \(2, 30\)",
    ):
        model({"subject": 2, "voxels": torch.zeros(2, 30)})
    with pytest.raises(BadInputError, match="keys 'subject' and 'voxels'"):
        model({"voxels": torch.zeros(2, 30)})
    data = toy_data(model, n=8)
    with pytest.raises(BadInputError, match="Unknown subject 7"):
        train_decoder(model, {7: data[1]}, config=TrainConfig(steps=1))
    with pytest.raises(
        BadInputError,
        match=r"datasets\[2\] X has 30 voxels but the model "
        r"expects 24",
    ):
        train_decoder(model, {2: data[1]}, config=TrainConfig(steps=1))
    with pytest.raises(BadInputError, match=r"X has 8 rows but Y has 5"):
        train_decoder(
            model,
            {1: (data[1][0], {k: v[:5] for k, v in data[1][1].items()})},
            config=TrainConfig(steps=1),
        )
    with pytest.raises(BadInputError, match=r"targets \"Y\['clip'\]\"|Y\['clip'\].*shape"):
        model.prepare_targets(np.zeros((4, 5)))
    with pytest.raises(BadInputError, match="checkpoint_every=5 needs out_dir"):
        train_decoder(model, data, config=TrainConfig(steps=1, checkpoint_every=5))
    with pytest.raises(BadInputError, match="'mixed_precision'.*'fp8'"):
        train_decoder(model, data, config=TrainConfig(steps=1, mixed_precision="fp8"))
    if not torch.cuda.is_available():
        with pytest.raises(BadInputError, match="fp16.*needs a CUDA GPU.*'bf16'"):
            train_decoder(model, data, config=TrainConfig(steps=1, mixed_precision="fp16"))
    with pytest.raises(
        BadInputError,
        match="method='reset_tuning' applies to MindBridgeDecoder, got a MindEye2Decoder",
    ):
        adapt_new_subject(model, data[1][0], data[1][1], method="reset_tuning")
    with pytest.raises(BadInputError, match="'method'.*Did you mean 'adapter'"):
        adapt_new_subject(model, data[1][0], data[1][1], method="adaptor")
    with pytest.raises(BadInputError, match="subject 1 is already known"):
        adapt_new_subject(model, data[1][0], data[1][1], subject=1)
    with pytest.raises(BadInputError, match="Unknown field"):
        MindEye2Config.from_dict({"n_voxels": [[1, 3]], "hiden_dim": 3})
    with pytest.raises(BadInputError, match="n_voxels must be a non-empty dict"):
        MindEye2Decoder(MindEye2Config())
    with pytest.raises(BadInputError, match="holds no config.json"):
        load_decoder(tmp_path)
    with pytest.raises(BadInputError, match="n_clusters=100 exceeds the 81 voxels"):
        tiny("brainit", n_clusters=100, init_embeddings="random").fit_clusters()
    with pytest.raises(BadInputError, match="d_model=8 must be divisible by n_heads=3"):
        tiny("brainit", n_heads=3)
