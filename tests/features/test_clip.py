"""OpenCLIP extractors on a tiny random-initialised ViT registered at run time (no weights)."""

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from braindecode_suite.features import extract_features, make_extractor  # noqa: E402
from braindecode_suite.features.clip import (  # noqa: E402
    OpenCLIPImageExtractor,
    OpenCLIPTextExtractor,
)
from braindecode_suite.utils import BadInputError  # noqa: E402

TINY = "bds-tiny-vit"
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(autouse=True)
def tiny_config(monkeypatch):
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY, TINY_CFG)


def _images(n=6, h=40, w=48, seed=0):
    # unequal height and width on purpose: the resize/crop path must handle it
    rng = np.random.default_rng(seed)
    return (rng.random((n, h, w, 3)) * 255).astype(np.uint8)


def _tiny(tokens="none", **kw):
    kw.setdefault("device", "cpu")
    return OpenCLIPImageExtractor(TINY, pretrained=None, tokens=tokens, **kw)


@pytest.mark.parametrize("tokens", ["none", "hidden", "projected"])
def test_image_shapes_match_fields(tokens):
    ext = _tiny(tokens)
    expected = {
        "none": {"embeds": (16,)},
        "hidden": {"embeds": (16,), "hidden": (16, 32)},  # (32 / 8)**2 patches, width 32
        "projected": {"embeds": (16,), "projected": (17, 16)},  # CLS + patches, embed_dim
    }[tokens]
    assert {k: v[0] for k, v in ext.fields().items()} == expected  # known before loading
    assert "model" not in ext.__dict__
    out = ext.transform(_images())
    assert {k: v.shape[1:] for k, v in out.items()} == expected
    assert all(v.dtype == np.float32 and np.all(np.isfinite(v)) for v in out.values())


def test_hidden_tokens_are_open_clip_output_tokens():
    ext = _tiny("hidden")
    imgs = _images(3)
    out = ext.transform(imgs)
    visual = ext.model.visual
    x = ext._preprocess(ext.prepare(imgs))
    visual.output_tokens = True
    try:
        with torch.no_grad():
            pooled, tokens = visual(x)
    finally:
        visual.output_tokens = False
    np.testing.assert_allclose(out["hidden"], tokens.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["embeds"], ext.model.encode_image(x).detach().numpy(), atol=1e-5)


def test_projected_cls_row_equals_embeds_and_matches_manual_projection():
    ext = _tiny("projected")
    imgs = _images(4)
    out = ext.transform(imgs)
    # open_clip's pooled output of a standard ViT is proj(ln_post(CLS)): row 0 of the tokens
    np.testing.assert_allclose(out["projected"][:, 0], out["embeds"], atol=1e-5)
    # the whole path by hand from open_clip's parts: patchify, transformer, ln_post, proj
    v = ext.model.visual
    with torch.no_grad():
        x = ext._preprocess(ext.prepare(imgs))
        t = v.conv1(x).flatten(2).transpose(1, 2)
        cls = v.class_embedding.expand(len(t), 1, -1)
        t = v.ln_pre(torch.cat([cls, t], 1) + v.positional_embedding)
        ref = v.ln_post(v.transformer(t)) @ v.proj
    np.testing.assert_allclose(out["projected"], ref.numpy(), atol=1e-5)
    assert not np.allclose(out["projected"][:, 1], out["projected"][:, 0])


def test_preprocessing_matches_open_clip_pil_transform():
    from PIL import Image

    x = np.linspace(0, 255, 72)
    img = np.stack(np.broadcast_arrays(x[None, :], x[:60, None], np.full((60, 72), 90.0)), -1)
    img = img.astype(np.uint8)
    ext = _tiny()
    _, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=None)
    ref = preprocess(Image.fromarray(img)).numpy()
    ours = ext._preprocess(ext.prepare(img[None]))[0].numpy()
    assert ours.shape == ref.shape == (3, 32, 32)
    np.testing.assert_allclose(ours, ref, atol=0.05)  # antialiasing rounding only


def test_image_determinism_and_batching_equivalence():
    imgs = _images(7)
    a = _tiny("projected", batch_size=4).transform(imgs)
    b = _tiny("projected", batch_size=1).transform(imgs)  # a fresh random init, same seed
    c = _tiny("projected", batch_size=4).transform(imgs)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5)
        np.testing.assert_array_equal(a[k], c[k])
    assert not np.allclose(a["embeds"][0], a["embeds"][1])


def test_local_checkpoint_path_gives_the_same_features(tmp_path):
    ref = _tiny("hidden")
    with torch.no_grad():  # perturb so the file differs from the seeded random init
        for p in ref.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "tiny.pt"
    torch.save(ref.model.state_dict(), path)
    ext = OpenCLIPImageExtractor(TINY, pretrained=str(path), tokens="hidden", device="cpu")
    imgs = _images(3)
    out, expected = ext.transform(imgs), ref.transform(imgs)
    for k in expected:
        np.testing.assert_allclose(out[k], expected[k], atol=1e-6)
    key = ext.weights_id()
    assert key["weights"] == f"{TINY}/tiny.pt" and len(key["weights_sha256"]) == 64
    assert key["open_clip"] == open_clip.__version__
    assert ref.weights_id()["weights"] == f"{TINY}/random-init"


def test_bad_arguments():
    with pytest.raises(BadInputError, match="'tokens' parameter"):
        OpenCLIPImageExtractor(TINY, pretrained=None, tokens="all")
    with pytest.raises(BadInputError, match="does not exist"):
        OpenCLIPImageExtractor(TINY, pretrained="/nowhere/ckpt.pt").weights_id()
    with pytest.raises(BadInputError, match="Allowed values are 'openai'"):
        OpenCLIPImageExtractor("ViT-B-32", pretrained="opnai").weights_id()
    with pytest.raises(BadInputError, match="'model_name' parameter"):
        OpenCLIPImageExtractor("ViT-Q-99", pretrained=None).fields()


def test_missing_weights_offline_is_a_clear_error(monkeypatch):
    # conftest sets HF_HUB_OFFLINE=1 per test, but huggingface_hub reads it once at import
    # (already done by open_clip): without this, the hub retries the blocked network ~90 s
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    img = _images(1)
    ext = OpenCLIPImageExtractor("ViT-B-32", pretrained="openai", device="cpu")
    assert ext.weights_id()["weights"] == "ViT-B-32/openai"  # the key needs no download
    with pytest.raises(BadInputError, match=r"ViT-B-32 / 'openai' are not available offline"):
        ext.transform(img)
    with pytest.raises(BadInputError, match="HF_HOME"):
        OpenCLIPTextExtractor("ViT-B-32", pretrained="openai", device="cpu").transform(["a"])


def test_text_shapes_and_captions_differ():
    ext = OpenCLIPTextExtractor(TINY, pretrained=None, tokens=True, device="cpu", batch_size=2)
    assert ext.fields() == {"embeds": ((16,), "float32"), "tokens": ((77, 32), "float32")}
    caps = ["a cat on a mat", "a red double-decker bus", "a cat on a mat"]
    out = ext.transform(caps)
    assert out["embeds"].shape == (3, 16) and out["tokens"].shape == (3, 77, 32)
    assert not np.allclose(out["embeds"][0], out["embeds"][1], atol=1e-3)
    np.testing.assert_allclose(out["embeds"][0], out["embeds"][2], atol=1e-6)
    ids = open_clip.get_tokenizer(TINY)(caps)
    with torch.no_grad():
        ref = ext.model.encode_text(ids).numpy()
    np.testing.assert_allclose(out["embeds"], ref, atol=1e-5)
    one = OpenCLIPTextExtractor(TINY, pretrained=None, device="cpu", batch_size=1).transform(caps)
    np.testing.assert_allclose(one["embeds"], out["embeds"], atol=1e-5)


def test_text_input_validation():
    ext = OpenCLIPTextExtractor(TINY, pretrained=None, device="cpu")
    with pytest.raises(TypeError, match="list of str"):
        ext.transform("a single caption")
    with pytest.raises(BadInputError, match="non-empty"):
        ext.transform([])
    with pytest.raises(TypeError, match="item 1 is int"):
        ext.transform(["ok", 3])


def test_registry_and_extract_features_cache(tmp_path):
    ext = make_extractor("open_clip_image", model_name=TINY, pretrained=None, tokens="hidden")
    assert isinstance(ext, OpenCLIPImageExtractor)
    assert isinstance(make_extractor("open_clip_text", model_name=TINY), OpenCLIPTextExtractor)
    imgs = _images(5)
    calls = []

    def load_images(ids):
        calls.append(list(ids))
        return imgs[np.asarray(ids)]

    kw = {"stimulus_set": {"name": "tiny"}, "cache_dir": tmp_path, "chunk": 2}
    path = extract_features(ext, np.arange(5), load_images, **kw)
    n_calls = len(calls)
    assert n_calls == 3
    again = make_extractor("open_clip_image", model_name=TINY, pretrained=None, tokens="hidden")
    assert extract_features(again, np.arange(5), load_images, **kw) == path
    assert len(calls) == n_calls  # cache hit: nothing loaded or computed
    from braindecode_suite.features import FeatureStore

    store = FeatureStore(path)
    np.testing.assert_allclose(store.read("hidden"), ext.transform(imgs)["hidden"], atol=1e-5)


def test_tiny_name_uses_the_shipped_tiny_config():
    from braindecode_suite.utils.tiny import TINY_OPEN_CLIP, TINY_OPEN_CLIP_CONFIG

    ext = OpenCLIPImageExtractor("tiny", pretrained="openai", tokens="hidden", device="cpu")
    assert (ext.model_name, ext.pretrained) == (TINY_OPEN_CLIP, None)
    width = TINY_OPEN_CLIP_CONFIG["vision_cfg"]["width"]
    assert ext.transform(_images(2))["hidden"].shape == (2, 16, width)


def test_caption_sets_are_averaged():
    ext = OpenCLIPTextExtractor(TINY, pretrained=None, tokens=True, device="cpu")
    caps = ["a cat on a sofa", "a grey cat", "a rocket", "a launch pad", "smoke"]
    single = ext.transform(caps)
    sets = ext.transform([caps[:2], caps[2:]])
    np.testing.assert_allclose(sets["embeds"][0], single["embeds"][:2].mean(0), rtol=1e-5)
    np.testing.assert_allclose(sets["tokens"][1], single["tokens"][2:].mean(0), rtol=1e-5)
    with pytest.raises(BadInputError, match="caption set 1 is empty"):
        ext.transform([caps[:2], []])
