import numpy as np
import pytest
from PIL import Image

from braindecode_suite.features import (
    FeatureStore,
    extract_features,
    feature_cache_path,
    make_extractor,
)
from braindecode_suite.utils import BadInputError


def _images(n=12, size=48, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, size, size, 3)) * 255).astype(np.uint8)


def test_pixels_match_pil_on_smooth_images():
    # a smooth gradient: antialiased bilinear resize must agree with PIL's bilinear
    x = np.linspace(0, 255, 64)
    img = np.stack(np.broadcast_arrays(x[None, :], x[:, None], np.full((64, 64), 128.0)), -1)
    img = img.astype(np.uint8)[None]
    out = make_extractor("pixels", size=16, device="cpu").transform(img)["pixels"][0]
    ref = np.asarray(Image.fromarray(img[0]).resize((16, 16), Image.BILINEAR)) / 255.0
    np.testing.assert_allclose(out, ref, atol=0.02)
    const = np.full((1, 40, 40, 3), 51, np.uint8)
    np.testing.assert_allclose(
        make_extractor("pixels", size=8, device="cpu").transform(const)["pixels"], 0.2, atol=1e-6
    )


def test_gabor_energy_prefers_the_grating_orientation():
    # stripes varying along x (vertical stripes) drive orientation 0 (u = x) most;
    # stripes varying along y drive orientation index 2 (theta = 90 degrees) most
    size = 96
    xx = np.arange(size)
    period = 13 / 2  # the middle scale's wavelength (kernel 13)
    vertical = 0.5 + 0.5 * np.sin(2 * np.pi * xx / period)[None, :].repeat(size, 0)
    imgs = np.stack([vertical, vertical.T])[..., None].repeat(3, -1).astype(np.float32)
    e = make_extractor("gabor", size=size, grid=4, device="cpu").transform(imgs)["energy"]
    mid = e[:, 1].mean(axis=(2, 3))  # (image, orientation) at the middle scale
    assert mid[0].argmax() == 0
    assert mid[1].argmax() == 2


def test_efficientnet_lite0_real_weights_recognise_a_cat():
    import torch
    from skimage import data

    ext = make_extractor("efficientnet_lite0", device="cpu")
    cat = data.chelsea()  # a tabby cat
    x = ext.prepare(cat[None])
    import torch.nn.functional as F

    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = ext.model((x - mean) / std)
    top5 = logits[0].topk(5).indices.tolist()
    # ImageNet classes 281-285 are the domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian)
    assert any(281 <= c <= 285 for c in top5), top5
    feats = ext.transform(cat[None])["avgpool"]
    assert feats.shape == (1, 1280) and np.all(np.isfinite(feats))
    assert ext.cache_key()["weights_sha256"].startswith("579344248a93")


def test_batching_does_not_change_results():
    imgs = _images(10)
    a = make_extractor("gabor", batch_size=3, device="cpu").transform(imgs)["energy"]
    b = make_extractor("gabor", batch_size=10, device="cpu").transform(imgs)["energy"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_extract_is_cached_and_keyed(tmp_path):
    imgs = _images(20)
    ids = np.arange(100, 120)
    calls = []

    def load(block):
        calls.append(len(block))
        return imgs[np.asarray(block) - 100]

    ext = make_extractor("pixels", size=8, device="cpu")
    path = extract_features(ext, ids, load, stimulus_set={"name": "t"}, cache_dir=tmp_path, chunk=7)
    assert calls == [7, 7, 6]
    np.testing.assert_allclose(
        FeatureStore(path).read("pixels", [105]), ext.transform(imgs[5:6])["pixels"], atol=1e-6
    )
    calls.clear()
    assert extract_features(ext, ids, load, stimulus_set={"name": "t"}, cache_dir=tmp_path) == path
    assert calls == []  # a re-run computes nothing
    other = make_extractor("pixels", size=9, device="cpu")
    assert feature_cache_path(other, {"name": "t"}, tmp_path) != path
    assert feature_cache_path(ext, {"name": "u"}, tmp_path) != path


def test_extract_resumes_after_a_crash(tmp_path):
    imgs = _images(20)
    ids = np.arange(20)
    calls = []

    def flaky(block):
        calls.append(list(block))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return imgs[np.asarray(block)]

    ext = make_extractor("pixels", size=8, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        extract_features(ext, ids, flaky, stimulus_set={}, cache_dir=tmp_path, chunk=5)
    path = feature_cache_path(ext, {}, tmp_path)
    assert not FeatureStore.exists(path)
    calls.clear()
    extract_features(
        ext, ids, lambda b: imgs[np.asarray(b)], stimulus_set={}, cache_dir=tmp_path, chunk=5
    )
    np.testing.assert_allclose(
        FeatureStore(path).read("pixels"), ext.transform(imgs)["pixels"], atol=1e-6
    )


def test_extract_bad_inputs(tmp_path):
    ext = make_extractor("pixels", size=8, device="cpu")
    with pytest.raises(BadInputError, match="non-empty 1-D"):
        extract_features(ext, [], lambda b: b, stimulus_set={}, cache_dir=tmp_path)
    with pytest.raises(BadInputError, match="returned 1 images for 3 ids"):
        extract_features(ext, [1, 2, 3], lambda b: _images(1), stimulus_set={}, cache_dir=tmp_path)
    with pytest.raises(BadInputError, match="shape \\(n_images, height, width, 3\\)"):
        ext.transform(np.zeros((2, 8, 8)))
    with pytest.raises(BadInputError, match="outside \\[0, 1\\]"):
        ext.transform(np.full((1, 8, 8, 3), 2.0))
    with pytest.raises(BadInputError, match="Did you mean 'pixels'"):
        make_extractor("pixel")


def test_corrupt_cached_file_gets_one_clear_message(tmp_path):
    imgs = _images(6)
    ext = make_extractor("pixels", size=8, device="cpu")
    path = extract_features(
        ext, np.arange(6), lambda b: imgs[np.asarray(b)], stimulus_set={}, cache_dir=tmp_path
    )
    with open(path, "r+b") as f:
        f.truncate(2000)
    with pytest.raises(
        BadInputError,
        match="cached pixels features are unreadable.*corrupt or truncated.*bds cache prune",
    ):
        extract_features(
            ext, np.arange(6), lambda b: imgs[np.asarray(b)], stimulus_set={}, cache_dir=tmp_path
        )
