"""Captions from predicted embeddings: retrieval, ClipCap prefix decoder, GIT with predicted tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from braindecode_suite.reconstruction.captions import (  # noqa: E402
    ClipPrefixCaptioner,
    _git_generate_ids,
    caption_from_git_features,
    git_image_features,
    load_clip_prefix_captioner,
    load_git_captioner,
    retrieve_captions,
)
from braindecode_suite.utils.tiny import clip_tokenizer  # noqa: E402
from braindecode_suite.utils.validation import BadInputError  # noqa: E402

CAPTIONS = [
    "a cat on a red sofa",
    "two dogs running in the park",
    "a plate of pasta with tomatoes",
    "a man riding a bicycle",
    "an airplane flying over clouds",
    "a bowl of fresh fruit",
    "children playing football on grass",
    "a clock tower at night",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory):
    """A private tiny-model cache for the module-scoped fixtures (built before per-test ones)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDS_CACHE_DIR", str(tmp_path_factory.mktemp("captions_cache")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def tokenizer(tiny_env):
    return clip_tokenizer()


# ============================================================== 1. retrieval
def _reference_topk(q, b, k, exclude=None):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    sims = qn.astype(np.float64) @ bn.T.astype(np.float64)
    if exclude is not None:
        for i, ex in enumerate(exclude):
            if ex:
                sims[i, list(ex)] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _bank(n=7, m=53, d=12, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, d)).astype(np.float32)
    # very different norms: cosine similarity must ignore them
    b = rng.standard_normal((m, d)) * rng.uniform(0.01, 100, (m, 1))
    caps = [f"caption number {j}" for j in range(m)]
    return q, b.astype(np.float32), caps


@pytest.mark.parametrize("chunk_size", [5, 53, 4096])
@pytest.mark.parametrize("k", [1, 3])
def test_retrieval_matches_brute_force(k, chunk_size):
    q, b, caps = _bank()
    out, idx = retrieve_captions(q, b, caps, k=k, chunk_size=chunk_size, return_indices=True)
    ref = _reference_topk(q, b, k)
    np.testing.assert_array_equal(idx, ref)
    if k == 1:
        assert out == [caps[j] for j in ref[:, 0]]
    else:
        assert out == [[caps[j] for j in row] for row in ref]
    # torch tensors are accepted too
    assert retrieve_captions(torch.from_numpy(q), torch.from_numpy(b), caps, k=k) == out


def test_retrieval_is_cosine_not_dot_product():
    # hand-worked: dot products are 10 and 0.5, cosines 0.707 and 1
    out = retrieve_captions([[1.0, 0.0]], [[10.0, 10.0], [0.5, 0.0]], ["long", "short"])
    assert out == ["short"]


def test_retrieval_exclude():
    q, b, caps = _bank(seed=1)
    top = _reference_topk(q, b, 1)[:, 0]
    exclude = [{int(t)} for t in top]
    exclude[2] = None  # no exclusion for this query
    exclude[3] = [int(top[3]), 0, 1]
    ref = _reference_topk(q, b, 2, exclude)
    _, idx = retrieve_captions(q, b, caps, k=2, exclude=exclude, chunk_size=4, return_indices=True)
    np.testing.assert_array_equal(idx, ref)
    assert idx[0, 0] != top[0] and idx[2, 0] == top[2]
    # exclusion leaves exactly k candidates: they are returned
    m = len(b)
    out = retrieve_captions(q[:1], b, caps, k=2, exclude=[set(range(2, m))], chunk_size=8)
    assert sorted(out[0]) == sorted(caps[:2])


def test_retrieval_bad_inputs():
    q, b, caps = _bank(n=3, m=10)
    with pytest.raises(BadInputError, match="same dimension.*12.*11"):
        retrieve_captions(q, b[:, :11], caps)
    with pytest.raises(BadInputError, match="bank_captions.*got 9 captions, expected 10"):
        retrieve_captions(q, b, caps[:9])
    with pytest.raises(BadInputError, match="k must be <= the bank size 10, got 11"):
        retrieve_captions(q, b, caps, k=11)
    with pytest.raises(BadInputError, match="k must be >= 1"):
        retrieve_captions(q, b, caps, k=0)
    with pytest.raises(BadInputError, match=r"pred_embeds must have shape \(n_queries, dim\)"):
        retrieve_captions(q[0], b, caps)
    with pytest.raises(BadInputError, match="exclude must have one entry per pred_embeds row"):
        retrieve_captions(q, b, caps, exclude=[set()])
    with pytest.raises(BadInputError, match=r"exclude\[1\] holds bank index 10, outside \[0, 9\]"):
        retrieve_captions(q, b, caps, exclude=[None, {10}, None])
    with pytest.raises(BadInputError, match="leaves only 1 bank entries for query 0"):
        retrieve_captions(q, b, caps, k=2, exclude=[set(range(9)), None, None])
    zero = b.copy()
    zero[4] = 0
    with pytest.raises(BadInputError, match="bank_embeds row 4 has zero norm"):
        retrieve_captions(q, zero, caps)
    nan = q.copy()
    nan[0, 0] = np.nan
    with pytest.raises(BadInputError, match="pred_embeds contains NaN"):
        retrieve_captions(nan, b, caps)
    with pytest.raises(BadInputError, match="bank_captions must hold strings"):
        retrieve_captions(q, b, list(range(10)))


# ====================================================== 2. CLIP-prefix decoder
def _embeds(n=8, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def trained(tiny_env, tokenizer):
    cap = load_clip_prefix_captioner("tiny", device="cpu", prefix_length=4)
    embeds = _embeds()
    losses = cap.fit(embeds, CAPTIONS, tokenizer, epochs=40, lr=1e-2, batch_size=8, seed=0)
    return cap, embeds, losses


def test_memorises_training_captions(trained, tokenizer):
    cap, embeds, losses = trained
    assert len(losses) == 40
    assert losses[-1] < 0.1 * losses[0]
    assert cap.generate(embeds, tokenizer) == CAPTIONS
    assert cap.generate(embeds.numpy(), tokenizer, num_beams=3) == CAPTIONS
    assert not cap.training


def test_generate_matches_manual_greedy_and_batching(trained, tokenizer):
    cap, embeds, _ = trained
    # other inputs than the training ones, so that decoding runs to max_new_tokens or eos
    x = _embeds(5, seed=7)
    single = cap.generate(x, tokenizer, max_new_tokens=6, batch_size=1)
    assert cap.generate(x, tokenizer, max_new_tokens=6, batch_size=4) == single
    # independent reference: argmax over the full sequence's logits, no cache
    eos = tokenizer.eos_token_id
    for i in range(2):
        with torch.no_grad():
            seq = cap.prefix(x[i : i + 1])
            ids = []
            for _ in range(6):
                nxt = int(cap.lm(inputs_embeds=seq).logits[0, -1].argmax())
                if nxt == eos:
                    break
                ids.append(nxt)
                tok = cap.lm.get_input_embeddings()(torch.tensor([[nxt]]))
                seq = torch.cat([seq, tok], dim=1)
        assert single[i] == tokenizer.decode(ids, skip_special_tokens=True).strip()


def test_loss_only_on_caption_tokens(trained, tokenizer):
    cap, embeds, _ = trained
    eos = tokenizer.eos_token_id
    rows = [tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in CAPTIONS[:3]]
    input_ids, attention, labels = cap._batch(rows, eos)
    p = cap.prefix_length
    assert (labels[:, :p] == -100).all()
    assert (labels[:, p:][attention == 0] == -100).all()
    with torch.no_grad():
        out = cap(embeds[:3], input_ids, attention, labels)
    # hand computation: the logit at position t predicts the token at t + 1
    logp = torch.log_softmax(out.logits.double(), dim=-1)
    terms = []
    for i, r in enumerate(rows):
        for j, token in enumerate(r):
            terms.append(-logp[i, p + j - 1, token])
    np.testing.assert_allclose(float(out.loss), float(torch.stack(terms).mean()), rtol=1e-4)


def test_fit_deterministic_under_seed_and_freeze(tiny_env, tokenizer):
    x = _embeds(6, seed=3)
    caps = CAPTIONS[:6]
    kw = dict(epochs=2, lr=1e-3, batch_size=4)
    runs = []
    for seed in (1, 1, 2):
        cap = load_clip_prefix_captioner("tiny", device="cpu", prefix_length=4)
        losses = cap.fit(x, caps, tokenizer, seed=seed, **kw)
        runs.append((losses, cap.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        torch.testing.assert_close(value, runs[1][1][key], rtol=0, atol=0)
    assert runs[0][0] != runs[2][0]  # another shuffling order

    cap = load_clip_prefix_captioner("tiny", device="cpu", prefix_length=4)
    lm_before = {k: v.clone() for k, v in cap.lm.state_dict().items()}
    map_before = {k: v.clone() for k, v in cap.mapping.state_dict().items()}
    cap.fit(x, caps, tokenizer, seed=0, freeze_lm=True, **kw)
    for key, value in cap.lm.state_dict().items():
        torch.testing.assert_close(value, lm_before[key], rtol=0, atol=0)
    assert any(not torch.equal(v, map_before[k]) for k, v in cap.mapping.state_dict().items())
    assert all(p.requires_grad for p in cap.lm.parameters())  # restored after fit


def test_save_load_round_trip(trained, tokenizer, tmp_path):
    cap, embeds, _ = trained
    folder = cap.save_pretrained(tmp_path / "captioner")
    assert (folder / "mapping.safetensors").is_file()
    assert (folder / "lm" / "config.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["clip_dim"] == 16 and config["prefix_length"] == 4
    loaded = ClipPrefixCaptioner.from_pretrained(folder, device="cpu")
    for key, value in cap.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    x = torch.cat([embeds, _embeds(3, seed=5)])
    expected = cap.generate(x, tokenizer, max_new_tokens=8)
    assert loaded.generate(x, tokenizer, max_new_tokens=8) == expected
    via_loader = load_clip_prefix_captioner(str(folder), device="cpu")
    assert via_loader.generate(x, tokenizer, max_new_tokens=8) == expected


def test_tiny_loader_is_cached_and_seeded(tiny_env):
    a = load_clip_prefix_captioner("tiny", device="cpu", prefix_length=4)
    b = load_clip_prefix_captioner("tiny:0", device="cpu", prefix_length=4)
    c = load_clip_prefix_captioner("tiny:1", device="cpu", prefix_length=4)
    assert a.clip_dim == 16 and a.d_model == 32 and a.lm.config.n_layer == 2
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, rtol=0, atol=0)
    assert not torch.equal(a.mapping[0].weight, c.mapping[0].weight)
    d = load_clip_prefix_captioner("tiny", device="cpu", clip_dim=8, prefix_length=2)
    assert d.mapping[0].in_features == 8 and d.mapping[2].out_features == 2 * 32
    with pytest.raises(BadInputError, match="tiny:<seed>"):
        load_clip_prefix_captioner("tiny:x")


def test_captioner_bad_inputs(trained, tokenizer, tmp_path):
    cap, embeds, _ = trained
    with pytest.raises(BadInputError, match="embeds last dimension must be 16.*got 15"):
        cap.fit(embeds[:, :15], CAPTIONS, tokenizer, epochs=1)
    with pytest.raises(BadInputError, match="captions must have 8 entries.*got 7"):
        cap.fit(embeds, CAPTIONS[:7], tokenizer, epochs=1)
    with pytest.raises(BadInputError, match="epochs must be >= 1"):
        cap.fit(embeds, CAPTIONS, tokenizer, epochs=0)
    with pytest.raises(BadInputError, match="lr must be a positive number"):
        cap.fit(embeds, CAPTIONS, tokenizer, epochs=1, lr=-1.0)
    with pytest.raises(BadInputError, match=r"pred_embeds must have shape \(n, clip_dim\)"):
        cap.generate(embeds[0], tokenizer)
    with pytest.raises(BadInputError, match="max_new_tokens must be <= 60"):
        cap.generate(embeds, tokenizer, max_new_tokens=61)

    class NoEos:
        eos_token_id = None

    with pytest.raises(BadInputError, match="tokenizer must have an eos_token_id"):
        cap.generate(embeds, NoEos())
    with pytest.raises(BadInputError, match="lm must be a transformers causal language model"):
        ClipPrefixCaptioner(torch.nn.Linear(2, 2), clip_dim=4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="not a saved ClipPrefixCaptioner"):
        ClipPrefixCaptioner.from_pretrained(tmp_path / "empty")
    with pytest.raises(BadInputError, match="does not exist"):
        ClipPrefixCaptioner.from_pretrained(tmp_path / "missing")


def test_captioner_missing_weights_offline():
    with pytest.raises(BadInputError, match="someone/not-downloaded.*huggingface-cli download"):
        load_clip_prefix_captioner("someone/not-downloaded", device="cpu")
    with pytest.raises(BadInputError, match="'gpt2'.*huggingface-cli download gpt2"):
        load_clip_prefix_captioner("gpt2", device="cpu", clip_dim=768)


# ================================================================== 3. GIT
@pytest.fixture(scope="module")
def git(tiny_env):
    return load_git_captioner("tiny", device="cpu")


def _images(n=4, h=40, w=36, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, h, w, 3)) * 255).astype(np.uint8)


def test_git_features_are_image_encoder_tokens(git):
    model, processor = git
    imgs = _images()
    feats = git_image_features(imgs, model, processor, batch_size=3)
    assert feats.shape == (4, 17, 32) and feats.dtype == np.float32
    pv = processor(images=list(imgs), return_tensors="pt").pixel_values
    with torch.no_grad():
        ref = model.git.image_encoder(pixel_values=pv).last_hidden_state.numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-5)
    np.testing.assert_allclose(
        git_image_features(imgs, model, processor, batch_size=1), feats, atol=1e-5
    )
    # int size: images already 32 px are only normalised with CLIP's mean and std
    small = _images(2, 32, 32, seed=1)
    mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
    x = torch.from_numpy(((small / 255.0 - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref_small = model.git.image_encoder(pixel_values=x).last_hidden_state.numpy()
    np.testing.assert_allclose(git_image_features(small, model, 32), ref_small, atol=1e-4)
    # float images in [0, 1] give the same tokens as their uint8 form
    np.testing.assert_allclose(git_image_features(small / 255.0, model, 32), ref_small, atol=1e-4)


def test_caption_from_features_equals_git_generate(git):
    model, processor = git
    imgs = _images()
    original = model.git.image_encoder
    feats = git_image_features(imgs, model, processor)
    pv = processor(images=list(imgs), return_tensors="pt").pixel_values
    for num_beams in (1, 2):
        with torch.no_grad():
            ref = model.generate(pixel_values=pv, max_new_tokens=8, num_beams=num_beams)
        ids = torch.cat(_git_generate_ids(feats, model, max_new_tokens=8, num_beams=num_beams))
        torch.testing.assert_close(ids, ref[:, 1:], rtol=0, atol=0)
    # greedy ids decoded: by the processor, and by its tokenizer alone
    with torch.no_grad():
        ref = model.generate(pixel_values=pv, max_new_tokens=8)
    expected = [c.strip() for c in processor.batch_decode(ref, skip_special_tokens=True)]
    assert caption_from_git_features(feats, model, processor, max_new_tokens=8) == expected
    captions = caption_from_git_features(feats, model, processor.tokenizer, max_new_tokens=8)
    assert captions == expected
    assert model.git.image_encoder is original
    assert len(set(captions)) > 1  # the image tokens do steer the decoder


def test_caption_from_features_batch_size(git):
    model, processor = git
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((5, 17, 32)).astype(np.float32)
    one = caption_from_git_features(feats, model, processor, max_new_tokens=6, batch_size=1)
    four = caption_from_git_features(feats, model, processor, max_new_tokens=6, batch_size=4)
    assert one == four and len(one) == 5


def test_image_encoder_restored_after_error(git, monkeypatch):
    model, processor = git
    original = model.git.image_encoder

    def broken(*args, **kwargs):
        assert model.git.image_encoder is not original  # swapped while generating
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "generate", broken)
    with pytest.raises(RuntimeError, match="boom"):
        caption_from_git_features(np.zeros((1, 17, 32)), model, processor)
    assert model.git.image_encoder is original


def test_git_bad_inputs(git):
    model, processor = git
    feats = np.zeros((2, 17, 32), dtype=np.float32)
    with pytest.raises(
        BadInputError, match=r"pred_features must have shape \(n, 17, 32\).*\(2, 16, 32\)"
    ):
        caption_from_git_features(feats[:, :16], model, processor)
    with pytest.raises(
        BadInputError, match=r"pred_features must have shape \(n, 17, 32\).*\(2, 17, 31\)"
    ):
        caption_from_git_features(feats[..., :31], model, processor)
    with pytest.raises(BadInputError, match="pred_features must have shape"):
        caption_from_git_features(feats[0], model, processor)
    with pytest.raises(BadInputError, match="num_beams must be >= 1"):
        caption_from_git_features(feats, model, processor, num_beams=0)
    with pytest.raises(BadInputError, match="model must be a transformers GitForCausalLM"):
        caption_from_git_features(feats, torch.nn.Linear(2, 2), processor)
    with pytest.raises(BadInputError, match="tokenizer must be the GIT processor"):
        caption_from_git_features(feats, model, object())
    with pytest.raises(BadInputError, match="image size 32, got 224"):
        git_image_features(_images(1), model, 224)
    with pytest.raises(
        BadInputError, match=r"images must have shape \(n_images, height, width, 3\)"
    ):
        git_image_features(_images(1)[..., :2], model, processor)


def test_git_missing_weights_offline():
    with pytest.raises(BadInputError, match="microsoft/git-large-coco.*huggingface-cli download"):
        load_git_captioner(device="cpu")
    with pytest.raises(BadInputError, match="someone/not-downloaded"):
        load_git_captioner("someone/not-downloaded", device="cpu")
