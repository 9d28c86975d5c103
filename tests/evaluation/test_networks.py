"""Evaluation networks: hooked layers, preprocessing and weights, against torchvision/PIL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.models.feature_extraction import create_feature_extractor

from braindecode_suite.evaluation import PROTOCOLS, load_network
from braindecode_suite.evaluation.networks import (
    CLIP_MEAN,
    CLIP_STD,
    FeatureNetwork,
    MissingWeights,
    Preprocess,
    resize_tensor,
)
from braindecode_suite.utils.validation import BadInputError

IMAGENET = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def _images(n=3, h=48, w=56, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, h, w, 3)) * 255).astype(np.uint8)


def _as_tensor(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def alexnet():
    """A random AlexNet with hooks on every layer any protocol takes, 64 px inputs."""
    layers = ("features.4", "features.5", "features.11", "features.12", "classifier.5")
    return load_network("alexnet", layers, preprocess=Preprocess(64), weights=None, device="cpu")


@pytest.fixture(scope="module")
def inception():
    """inception_v3 random-init is slow to build: once per module, at 80 px."""
    return load_network("inception_v3", preprocess=Preprocess(80), weights=None, device="cpu")


# ------------------------------------------------------------------------------ layers


def test_alexnet_hooks_equal_torchvision_slices(alexnet):
    """features.4 / 11 (MindEye) and 5 / 12 (Takagi) are features[:5] / [:12] / [:6] / [:13]."""
    images = _images()
    feats = alexnet.extract(images)
    model = alexnet.model
    x = IMAGENET(
        torch.nn.functional.interpolate(
            _as_tensor(images), size=(64, 64), mode="bilinear", antialias=True
        )
    )
    with torch.no_grad():
        for layer, stop in [
            ("features.4", 5),
            ("features.11", 12),
            ("features.5", 6),
            ("features.12", 13),
        ]:
            ref = model.features[:stop](x).flatten(1).numpy()
            np.testing.assert_allclose(feats[layer], ref, rtol=1e-5, atol=1e-6)
        pooled = torch.flatten(model.avgpool(model.features(x)), 1)
        ref7 = model.classifier[:6](pooled).numpy()  # ReLU after fc7
    np.testing.assert_allclose(feats["classifier.5"], ref7, rtol=1e-5, atol=1e-6)
    assert feats["features.4"].shape == (3, 192 * 7 * 7)
    assert feats["features.11"].shape == (3, 256 * 3 * 3)
    assert all(v.dtype == np.float32 for v in feats.values())


def test_alexnet_matches_mindeye_feature_extractor(alexnet):
    """MindEye's own call: create_feature_extractor(alexnet, ['features.4', 'features.11'])."""
    images = _images(seed=1)
    ours = alexnet.extract(images)
    fx = create_feature_extractor(alexnet.model, return_nodes=["features.4", "features.11"])
    x = alexnet.preprocess(_as_tensor(images))
    with torch.no_grad():
        ref = fx(x)
    for layer in ("features.4", "features.11"):
        np.testing.assert_allclose(ours[layer], ref[layer].flatten(1).numpy(), rtol=1e-5, atol=1e-6)


def test_inception_avgpool_matches_feature_extractor(inception):
    images = _images(n=2, seed=2)
    ours = inception(images)
    assert ours.shape == (2, 2048)
    fx = create_feature_extractor(inception.model, return_nodes=["avgpool"])
    with torch.no_grad():
        ref = fx(inception.preprocess(_as_tensor(images)))["avgpool"].flatten(1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-9)
    assert inception.model.transform_input  # as torchvision sets it with the real weights


def test_batches_do_not_change_features(alexnet):
    images = _images(n=5, seed=3)
    one = alexnet.extract(images)
    alexnet.batch_size, saved = 2, alexnet.batch_size
    try:
        two = alexnet.extract(images)
    finally:
        alexnet.batch_size = saved
    for layer in one:
        np.testing.assert_allclose(one[layer], two[layer], rtol=1e-5, atol=1e-6)


def test_random_weights_are_seeded_and_labelled():
    a = load_network(
        "alexnet", "features.4", preprocess=Preprocess(64), weights=None, seed=1, device="cpu"
    )
    b = load_network(
        "alexnet", "features.4", preprocess=Preprocess(64), weights=None, seed=1, device="cpu"
    )
    c = load_network(
        "alexnet", "features.4", preprocess=Preprocess(64), weights=None, seed=2, device="cpu"
    )
    images = _images(n=2)
    np.testing.assert_array_equal(a(images), b(images))
    assert not np.allclose(a(images), c(images))
    assert "random weights" in a.weights and "NOT the published" in a.weights
    assert a.info()["weights"] == a.weights


def test_tiny_clip_output_is_encode_image():
    net = load_network("clip_vit_l14", weights=None, model_name="tiny", device="cpu")
    images = _images(n=2, h=40, w=40)
    ours = net(images)
    x = torch.nn.functional.interpolate(
        _as_tensor(images), size=(net.preprocess.size,) * 2, mode="bilinear", antialias=True
    )
    x = T.Normalize(CLIP_MEAN, CLIP_STD)(x)
    from braindecode_suite.features.clip import OpenCLIPImageExtractor

    model = OpenCLIPImageExtractor("tiny", device="cpu").model
    with torch.no_grad():
        ref = model.encode_image(x).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    assert "random" in net.weights
    with pytest.raises(BadInputError, match="takes 32 px inputs"):
        load_network("clip_vit_l14", weights=None, model_name="tiny", preprocess=Preprocess(224))


# ------------------------------------------------------------------------------ preprocessing


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("size", [40, 96])  # down and up
def test_tensor_preprocess_matches_torchvision(size, antialias):
    """MindEye: transforms.Resize(size, BILINEAR, antialias) + Normalize on a float tensor."""
    images = _images(n=2, h=64, w=64)
    x = _as_tensor(images)
    ours = Preprocess(size, antialias=antialias)(x)
    ref = T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode.BILINEAR, antialias=antialias),
            IMAGENET,
        ]
    )(x)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-5)


def test_pil_preprocess_matches_torchvision_pil_pipeline():
    """Takagi: Resize(299) + CenterCrop(299) + ToTensor + Normalize on PIL images."""
    images = _images(n=2, h=180, w=240, seed=4)
    pre = Preprocess(299, resize="shorter_crop", pil=True)
    ours = pre(_as_tensor(images)).numpy()
    tv = T.Compose([T.Resize(299), T.CenterCrop(299), T.ToTensor(), IMAGENET])
    ref = np.stack([tv(Image.fromarray(im)).numpy() for im in images])
    assert ours.shape == ref.shape == (2, 3, 299, 299)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    diff = np.abs(ours - ref) * std * 255  # in grey levels
    assert diff.max() <= 1.01
    assert np.mean(diff > 0.5) < 0.01


def test_pil_resize_bicubic_within_one_level():
    """brain-diffuser's Image.resize((425, 425)) (default filter: bicubic) on uint8."""
    images = _images(n=1, h=160, w=160, seed=5)
    ours = resize_tensor(_as_tensor(images), 120, interpolation="bicubic", pil=True)
    ours = (ours[0].permute(1, 2, 0).numpy() * 255).round()
    ref = np.asarray(Image.fromarray(images[0]).resize((120, 120))).astype(float)
    assert np.abs(ours - ref).max() <= 1
    assert np.mean(ours != ref) < 0.01


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_protocol_input_sizes_reach_the_network(name):
    """Each protocol's networks see the published input sizes (checked with a stub network)."""
    expected = {
        "brain-diffuser": dict.fromkeys(["Alex2", "Alex5", "Incep", "CLIP", "Eff", "SwAV"], 224),
        "mindeye": {"Alex2": 256, "Alex5": 256, "Incep": 342, "CLIP": 224, "Eff": 255, "SwAV": 224},
        "takagi": {"Alex2": 299, "Alex5": 299, "Alex7": 299, "Incep": 299, "CLIP": 224},
    }
    expected["mindeye2"] = expected["mindeye"]
    proto = PROTOCOLS[name]
    assert {n.metric: n.preprocess.size for n in proto.networks} == expected[name]
    seen = []

    class Stub(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return x.mean(dim=(2, 3))

    stage = (proto.pre_resize or 100, proto.pre_resize or 140)  # non-square when not resized
    images = _images(n=2, h=stage[0], w=stage[1])
    for spec in proto.networks:
        FeatureNetwork("stub", Stub(), ["output"], spec.preprocess, weights="stub")(images)
        assert seen[-1] == (spec.preprocess.size,) * 2, spec
    if name == "takagi":
        assert all(s.preprocess.resize == "shorter_crop" for s in proto.networks)
    if name.startswith("mindeye"):
        assert not any(s.preprocess.antialias for s in proto.networks)


def test_preprocess_validates():
    with pytest.raises(BadInputError, match="resize"):
        Preprocess(224, resize="crop")
    with pytest.raises(BadInputError, match="interpolation"):
        Preprocess(224, interpolation="lanczos")


# ------------------------------------------------------------------------------ weights


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


@pytest.mark.parametrize(
    ("name", "tag", "hint"),
    [
        ("alexnet", None, "torchvision.models.alexnet(weights='IMAGENET1K_V1')"),
        ("inception_v3", None, "torchvision.models.inception_v3(weights='IMAGENET1K_V1')"),
        ("efficientnet_b1", None, "efficientnet_b1(weights='IMAGENET1K_V2')"),
        ("efficientnet_b1", "IMAGENET1K_V1", "efficientnet_b1(weights='IMAGENET1K_V1')"),
        ("swav_resnet50", None, "torch.hub.load('facebookresearch/swav:main', 'resnet50')"),
        ("clip_vit_l14", None, "create_model_and_transforms('ViT-L-14-quickgelu'"),
    ],
)
def test_missing_weights_name_the_network_and_the_download(empty_caches, name, tag, hint):
    with pytest.raises(MissingWeights, match=name) as info:
        load_network(name, weights_tag=tag, device="cpu")
    assert hint in str(info.value)
    assert "nothing is downloaded" in str(info.value)
    assert isinstance(info.value, BadInputError)


def test_swav_default_goes_through_torch_hub_cache_only(empty_caches):
    """The real code path: torch.hub.load of the cached repository, checkpoint from the cache.

    A stand-in hubconf (a small net with an ``avgpool``) and checkpoint are placed where
    torch.hub keeps facebookresearch/swav:main; sockets are blocked by conftest.
    """
    hub = empty_caches / "torch" / "hub"
    repo = hub / "facebookresearch_swav_main"
    repo.mkdir(parents=True)
    (repo / "hubconf.py").write_text(
        "import torch\n"
        "dependencies = ['torch']\n"
        "def resnet50(pretrained=True):\n"
        "    m = torch.nn.Sequential()\n"
        "    m.add_module('conv', torch.nn.Conv2d(3, 4, 3))\n"
        "    m.add_module('avgpool', torch.nn.AdaptiveAvgPool2d(1))\n"
        "    if pretrained:\n"
        "        sd = torch.hub.load_state_dict_from_url(\n"
        "            'https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar',\n"
        "            map_location='cpu')\n"
        "        m.load_state_dict(sd)\n"
        "    return m\n"
    )
    conv = torch.nn.Conv2d(3, 4, 3)
    (hub / "checkpoints").mkdir()
    torch.save(
        {"conv.weight": conv.weight.data, "conv.bias": conv.bias.data},
        hub / "checkpoints" / "swav_800ep_pretrain.pth.tar",
    )
    net = load_network("swav_resnet50", preprocess=Preprocess(32), device="cpu")
    assert "torch.hub facebookresearch/swav:main" in net.weights
    images = _images(n=2, h=32, w=32)
    with torch.no_grad():
        ref = conv(IMAGENET(_as_tensor(images))).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(net(images), ref, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(BadInputError, match="Did you mean 'alexnet'"):
        load_network("alexnett")
    with pytest.raises(BadInputError, match="no layer 'features.44'"):
        load_network("alexnet", "features.44", weights=None, device="cpu")
    with pytest.raises(BadInputError, match="neither 'default' nor an existing file"):
        load_network("alexnet", weights="no/such/file.pth", device="cpu")
    with pytest.raises(BadInputError, match="weights_tag"):
        load_network("alexnet", weights_tag="IMAGENET1K_V9", weights=None, device="cpu")
    with pytest.raises(BadInputError, match="model_name applies to clip_vit_l14 only"):
        load_network("alexnet", model_name="tiny")


def test_call_needs_one_layer_and_valid_images(alexnet):
    with pytest.raises(BadInputError, match="extract"):
        alexnet(_images(n=1))
    with pytest.raises(BadInputError, match=r"\(n_images, height, width, 3\)"):
        alexnet.extract(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(BadInputError, match=r"outside \[0, 1\]"):
        alexnet.extract(np.full((1, 8, 8, 3), 2.0, np.float32))


def test_bad_weights_file(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(BadInputError, match="does not fit torchvision's alexnet"):
        load_network("alexnet", weights=bad, device="cpu")
